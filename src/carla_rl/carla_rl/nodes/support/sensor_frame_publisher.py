"""The simulator side of the bridge contract, shared by every simulator node (embedded, CARLA client,
bridge adapter): one publisher per sensor topic of an env, and one tick published in the contract's
order — route (latched, when it changed), sensors, events, and the situation last (it announces the
tick's event counts, so consumers complete the tick on it)."""

from __future__ import annotations

from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path
from rclpy.node import Node
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Float32

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.contract import topics
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.subscriber_check import SubscriberCheck
from carla_rl.contract.sensor_frame import SensorFrame
from carla_rl_interfaces.msg import CollisionEvent, EgoSituation, LaneInvasionEvent


class SensorFramePublisher:
    def __init__(self, node: Node, role_name: str, publish_radar: bool = True) -> None:
        def p(msg_type, name: str, profile):
            return node.create_publisher(msg_type, topics.carla_topic(role_name, name), profile)

        self.frame_id = role_name
        self.publish_radar = publish_radar
        self.camera = p(Image, topics.CAMERA, qos.SENSOR)
        self.lidar = p(PointCloud2, topics.LIDAR, qos.SENSOR)
        self.radar = p(PointCloud2, topics.RADAR, qos.SENSOR)
        self.odometry = p(OdometryMsg, topics.ODOMETRY, qos.SENSOR)
        self.speedometer = p(Float32, topics.SPEEDOMETER, qos.SENSOR)
        self.collision = p(CollisionEvent, topics.COLLISION, qos.EVENTS)
        self.lane_invasion = p(LaneInvasionEvent, topics.LANE_INVASION, qos.EVENTS)
        self.situation = p(EgoSituation, topics.SITUATION, qos.SENSOR)
        self.route = p(Path, topics.ROUTE, qos.LATCHED)
        self.route_version: int | None = None
        self.radar_listened = SubscriberCheck(self.radar)
        self.speedometer_listened = SubscriberCheck(self.speedometer)

    def publish_sensors(self, frame: SensorFrame, stamp) -> None:
        """Everything of the tick but the situation."""
        fid = self.frame_id
        if frame.route_version != self.route_version and len(frame.route) >= 2:
            self.route_version = frame.route_version
            self.route.publish(conv.path_msg(frame.route, stamp))
        self.camera.publish(conv.image_msg(frame.camera, stamp, fid))
        self.lidar.publish(conv.point_cloud_msg(frame.lidar, conv.LIDAR_FIELDS, stamp, fid))
        # Radar and speedometer have no consumer in the training graph (rviz2, recorders, users
        # do): built and published only while subscribed — every message per tick costs.
        if self.publish_radar and self.radar_listened():
            self.radar.publish(conv.point_cloud_msg(frame.radar, conv.RADAR_FIELDS, stamp, fid))
        self.odometry.publish(conv.odometry_msg(frame.odometry, stamp, fid))
        if self.speedometer_listened():
            self.speedometer.publish(Float32(data=float(frame.speed)))
        for event in frame.collisions:
            self.collision.publish(conv.collision_msg(event, stamp, fid))
        for event in frame.lane_invasions:
            self.lane_invasion.publish(conv.lane_invasion_msg(event, stamp, fid))

    def publish_situation(self, frame: SensorFrame, stamp) -> None:
        """Last message of the tick."""
        self.situation.publish(conv.situation_msg(frame.situation, stamp, self.frame_id))
