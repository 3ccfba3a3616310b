"""The carla_bridge_adapter node against a fake bridge that speaks the real carla_msgs types (the test-only
package): lockstep tick assembly, situation last, command forwarding, events, restart detection.

Runs in-process (DDS isolated by the test run's ROS_DOMAIN_ID and localhost discovery)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("carla_rl_interfaces.msg", reason="carla_rl_interfaces is not built (source install/setup.bash)")

STEP_NS = 50_000_000


@pytest.fixture
def context(carla_msgs):
    """A private rclpy context (other tests may hold the default one)."""
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    ctx = rclpy.context.Context()
    # the phase table, as the graph passes it; the -p values are keys no config file sets here
    curriculum = Path(__file__).resolve().parents[2] / "config" / "curriculum.yaml"
    rclpy.init(context=ctx, args=["--ros-args", "-r", "__ns:=/env_0", "--params-file", str(curriculum),
                                  "-p", "bridge.spawn_ego:=false", "-p", "shell.required_subscribers:=1",
                                  "-p", "bridge.event_settle_s:=0.01"])
    yield ctx
    rclpy.try_shutdown(context=ctx)


def test_adapter_node_lockstep_with_a_fake_bridge(context, carla_msgs):
    from geometry_msgs.msg import Pose
    from nav_msgs.msg import Odometry
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from sensor_msgs.msg import Image, PointCloud2, PointField

    from carla_rl.nodes import carla_bridge_adapter_node as adapter_mod
    from carla_rl_interfaces.msg import CollisionEvent, EgoSituation, VehicleCommand

    msg, _ = carla_msgs
    # the node imports carla_msgs lazily: the test package is importable through the fixture
    adapter = adapter_mod.CarlaBridgeAdapterNode(context=context)
    bridge = Node("fake_bridge", context=context)
    stack = Node("fake_stack", context=context)

    situations, collisions, controls, poses = [], [], [], []
    stack.create_subscription(EgoSituation, "carla/ego_vehicle/situation", situations.append, 10)
    stack.create_subscription(CollisionEvent, "carla/ego_vehicle/collision", collisions.append, 10)
    pub_cmd = stack.create_publisher(VehicleCommand, "vehicle_command", 10)
    bridge.create_subscription(msg.CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd",
                               controls.append, 10)
    bridge.create_subscription(Pose, "/carla/ego_vehicle/control/set_transform", poses.append, 10)
    pubs = {
        "status": bridge.create_publisher(msg.CarlaStatus, "/carla/status", 10),
        "camera": bridge.create_publisher(Image, "/carla/ego_vehicle/semantic_bev/image", 10),
        "lidar": bridge.create_publisher(PointCloud2, "/carla/ego_vehicle/lidar", 10),
        "radar": bridge.create_publisher(PointCloud2, "/carla/ego_vehicle/radar_front", 10),
        "odometry": bridge.create_publisher(Odometry, "/carla/ego_vehicle/odometry", 10),
        "collision": bridge.create_publisher(msg.CarlaCollisionEvent, "/carla/ego_vehicle/collision", 10),
    }
    executor = SingleThreadedExecutor(context=context)
    for node in (adapter, bridge, stack):
        executor.add_node(node)

    def spin_until(cond, timeout=5.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            executor.spin_once(timeout_sec=0.02)
        return cond()

    def cloud(names, rows):
        rows = np.asarray(rows, np.float32).reshape(-1, len(names))
        return PointCloud2(height=1, width=len(rows), point_step=4 * len(names), row_step=4 * len(names) * len(rows),
                           data=rows.tobytes(), is_dense=True, is_bigendian=False,
                           fields=[PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                                   for i, n in enumerate(names)])

    def publish_tick(frame, collision=False):
        sec, nsec = divmod(frame * STEP_NS, 1_000_000_000)
        pubs["status"].publish(msg.CarlaStatus(frame=frame, fixed_delta_seconds=0.05, synchronous_mode=True,
                                               synchronous_mode_running=True))
        img = Image(height=2, width=2, encoding="bgra8", step=8, data=bytes(16))
        od = Odometry()
        od.pose.pose.orientation.w = 1.0
        od.twist.twist.linear.x = 1.5
        lid = cloud(["x", "y", "z", "intensity"], [[1, 2, 3, 4]])
        rad = cloud(["x", "y", "z", "Range", "Velocity", "AzimuthAngle", "ElevationAngle"], [])
        for m in (img, od, lid, rad):
            m.header.stamp.sec, m.header.stamp.nanosec = sec, nsec
        if collision:
            c = msg.CarlaCollisionEvent(other_actor_id=99)
            c.header.stamp.sec, c.header.stamp.nanosec = sec, nsec
            pubs["collision"].publish(c)
        pubs["camera"].publish(img)
        pubs["lidar"].publish(lid)
        pubs["radar"].publish(rad)
        pubs["odometry"].publish(od)

    try:
        assert spin_until(lambda: adapter.sensors.situation.get_subscription_count() >= 1
                          and pubs["odometry"].get_subscription_count() >= 1
                          and pub_cmd.get_subscription_count() >= 1)
        # first tick: starts the episode (no map: no teleport) and makes the bridge tick with a brake
        publish_tick(100)
        assert spin_until(lambda: len(controls) >= 1)
        assert controls[-1].brake == 1.0 and not situations
        publish_tick(101, collision=True)
        assert spin_until(lambda: len(situations) == 1)
        sit = situations[0]
        assert (sit.step_id, sit.episode_id, sit.episode_step, sit.collision_events) == (101, 1, 0, 1)
        assert spin_until(lambda: len(collisions) == 1) and collisions[0].other_actor_id == 99
        # the policy answers tick 101: forwarded as CarlaEgoVehicleControl
        cmd = VehicleCommand(step_id=101, action_index=0)
        cmd.control.throttle, cmd.control.steer = 0.8, -0.25
        pub_cmd.publish(cmd)
        assert spin_until(lambda: len(controls) == 2)
        assert controls[-1].throttle == pytest.approx(0.8) and controls[-1].steer == pytest.approx(-0.25)
        publish_tick(102)
        assert spin_until(lambda: len(situations) == 2)
        assert (situations[1].step_id, situations[1].episode_step, situations[1].collision_events) == (102, 1, 0)
        # a stale command (wrong step) is not forwarded
        pub_cmd.publish(VehicleCommand(step_id=7))
        spin_until(lambda: False, timeout=0.3)
        assert len(controls) == 2
        # the server restarted: the frame counter goes backwards -> counted, a new episode starts
        pubs["status"].publish(msg.CarlaStatus(frame=3, fixed_delta_seconds=0.05, synchronous_mode=True,
                                               synchronous_mode_running=True))
        assert spin_until(lambda: adapter.monitor.restarts == 1)
        publish_tick(4)
        publish_tick(5)
        assert spin_until(lambda: len(situations) == 3)
        assert (situations[2].step_id, situations[2].episode_id, situations[2].episode_step) == (5, 2, 0)
    finally:
        executor.shutdown()
        for node in (adapter, bridge, stack):
            node.destroy_node()
