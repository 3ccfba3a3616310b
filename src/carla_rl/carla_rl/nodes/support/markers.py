"""visualization_msgs/MarkerArray views of a world for rviz2: the map (latched, once per map) and
the actors + traffic lights (every few ticks, only while somebody subscribes).

Works on any world exposing ``road_network`` (lanes, markings, crosswalks, parking bays, buildings,
light positions), ``light_states`` and ``actors_snapshot()`` (carla_rl.sim.World does).
"""

from __future__ import annotations

import math

import numpy as np
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from carla_rl.nodes.support.ros_conversions import MAP_FRAME
from carla_rl.contract.sensor_frame import LaneMarking, TrafficLightState

# colours (r, g, b, a)
LANE_COLOUR = (0.45, 0.45, 0.5, 1.0)
SOLID_COLOUR = (1.0, 1.0, 1.0, 1.0)
BROKEN_COLOUR = (0.8, 0.8, 0.8, 1.0)
CURB_COLOUR = (0.95, 0.3, 0.85, 1.0)
CROSSWALK_COLOUR = (0.9, 0.9, 0.2, 1.0)
BAY_COLOUR = (0.2, 0.7, 1.0, 1.0)
BUILDING_COLOUR = (0.35, 0.35, 0.35, 1.0)
EGO_COLOUR = (1.0, 1.0, 1.0, 1.0)
VEHICLE_COLOUR = (0.1, 0.2, 0.85, 1.0)
PEDESTRIAN_COLOUR = (0.9, 0.1, 0.25, 1.0)
LIGHT_COLOURS = {TrafficLightState.RED: (1.0, 0.0, 0.0, 1.0), TrafficLightState.YELLOW: (1.0, 0.8, 0.0, 1.0),
                 TrafficLightState.GREEN: (0.0, 1.0, 0.0, 1.0), TrafficLightState.OFF: (0.3, 0.3, 0.3, 1.0),
                 TrafficLightState.UNKNOWN: (0.3, 0.3, 0.3, 1.0)}
LINE_WIDTH_M = 0.15
VEHICLE_HEIGHT_M = 1.5
PEDESTRIAN_HEIGHT_M = 1.8
LIGHT_SIZE_M = 1.0
KIND_EGO, KIND_VEHICLE, KIND_PEDESTRIAN = 0, 1, 2


def _colour(rgba: tuple[float, float, float, float]) -> ColorRGBA:
    return ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3])


def _points(polyline: np.ndarray, closed: bool = False) -> list[Point]:
    pts = [Point(x=float(x), y=float(y), z=0.0) for x, y in polyline]
    if closed and pts:
        pts.append(pts[0])
    return pts


def _line_marker(ns: str, marker_id: int, polyline: np.ndarray, colour, stamp, closed=False) -> Marker:
    m = Marker()
    m.header.frame_id, m.header.stamp = MAP_FRAME, stamp
    m.ns, m.id, m.type, m.action = ns, marker_id, Marker.LINE_STRIP, Marker.ADD
    m.pose.orientation.w = 1.0
    m.scale.x = LINE_WIDTH_M
    m.color = _colour(colour)
    m.points = _points(polyline, closed)
    return m


class WorldMarkers:
    def __init__(self, role_name: str) -> None:
        self.role_name = role_name

    def static(self, world, stamp) -> MarkerArray:
        net = world.road_network
        markers = [Marker(action=Marker.DELETEALL)]
        for i, lane in enumerate(net.lanes):
            markers.append(_line_marker("lanes", i, lane.points, LANE_COLOUR, stamp))
        for i, (polyline, kind) in enumerate(net.markings):
            colour = {LaneMarking.SOLID: SOLID_COLOUR, LaneMarking.SOLIDSOLID: SOLID_COLOUR,
                      LaneMarking.CURB: CURB_COLOUR}.get(LaneMarking(kind), BROKEN_COLOUR)
            markers.append(_line_marker("markings", i, polyline, colour, stamp))
        for i, polygon in enumerate(net.crosswalks):
            markers.append(_line_marker("crosswalks", i, polygon, CROSSWALK_COLOUR, stamp, closed=True))
        for i, polygon in enumerate(net.parking_bays):
            markers.append(_line_marker("parking_bays", i, polygon, BAY_COLOUR, stamp, closed=True))
        for i, polygon in enumerate(getattr(net, "buildings", [])):
            markers.append(_line_marker("buildings", i, polygon, BUILDING_COLOUR, stamp, closed=True))
        return MarkerArray(markers=markers)

    def dynamic(self, world, stamp) -> MarkerArray:
        snap = world.actors_snapshot()
        markers = []
        for i in range(len(snap.kinds)):
            kind = int(snap.kinds[i])
            m = Marker()
            m.header.frame_id, m.header.stamp = MAP_FRAME, stamp
            m.ns = {KIND_EGO: "ego", KIND_VEHICLE: "vehicles"}.get(kind, "pedestrians")
            m.id = int(snap.ids[i])
            m.type = Marker.CUBE if kind != KIND_PEDESTRIAN else Marker.CYLINDER
            m.action = Marker.ADD
            height = VEHICLE_HEIGHT_M if kind != KIND_PEDESTRIAN else PEDESTRIAN_HEIGHT_M
            m.pose.position.x, m.pose.position.y = float(snap.positions[i, 0]), float(snap.positions[i, 1])
            m.pose.position.z = height / 2.0
            m.pose.orientation.z = math.sin(float(snap.yaws[i]) / 2.0)
            m.pose.orientation.w = math.cos(float(snap.yaws[i]) / 2.0)
            m.scale.x, m.scale.y, m.scale.z = float(snap.sizes[i, 0]), float(snap.sizes[i, 1]), height
            m.color = _colour({KIND_EGO: EGO_COLOUR, KIND_VEHICLE: VEHICLE_COLOUR}.get(kind, PEDESTRIAN_COLOUR))
            m.lifetime.nanosec = 500_000_000
            markers.append(m)
        net = world.road_network
        states = world.light_states
        for i, (x, y) in enumerate(net.light_positions):
            m = Marker()
            m.header.frame_id, m.header.stamp = MAP_FRAME, stamp
            m.ns, m.id, m.type, m.action = "traffic_lights", i, Marker.SPHERE, Marker.ADD
            m.pose.position.x, m.pose.position.y, m.pose.position.z = float(x), float(y), 3.0
            m.pose.orientation.w = 1.0
            m.scale.x = m.scale.y = m.scale.z = LIGHT_SIZE_M
            m.color = _colour(LIGHT_COLOURS[TrafficLightState(int(states[i]))])
            markers.append(m)
        return MarkerArray(markers=markers)
