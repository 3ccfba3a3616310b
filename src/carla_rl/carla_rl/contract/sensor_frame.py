"""Plain data that crosses the simulator boundary.

The embedded simulator (``carla_rl.sim``) produces these; the CARLA nodes (``carla_rl.carla``)
produce them from CARLA data; ``ros_conversions`` turns them into ROS messages and back; the
preprocess and reward cores consume them. No ROS, no torch, no simulator internals here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class TrafficLightState(IntEnum):
    """carla_msgs/CarlaTrafficLightStatus values (also EgoSituation constants)."""

    RED = 0
    YELLOW = 1
    GREEN = 2
    OFF = 3
    UNKNOWN = 4


class LaneMarking(IntEnum):
    """carla_msgs/CarlaLaneInvasionEvent constants (carla.LaneMarkingType order)."""

    OTHER = 0
    BROKEN = 1
    SOLID = 2
    SOLIDSOLID = 3
    SOLIDBROKEN = 4
    BROKENSOLID = 5
    BROKENBROKEN = 6
    BOTTSDOTS = 7
    GRASS = 8
    CURB = 9
    NONE = 10


@dataclass
class VehicleControl:
    """carla.VehicleControl semantics: throttle [0, 1], steer [-1, 1] (+ = right), brake [0, 1]."""

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def sanitized(self) -> tuple["VehicleControl", bool]:
        """Apply CARLA's rules: clip to range; a NaN/inf field makes the whole command a full brake.

        Returns the control to apply and whether the input was invalid (to be counted).
        """
        values = (self.throttle, self.steer, self.brake)
        if not all(math.isfinite(v) for v in values):
            return VehicleControl(0.0, 0.0, 1.0, bool(self.hand_brake), bool(self.reverse)), True
        clipped = VehicleControl(
            throttle=min(max(self.throttle, 0.0), 1.0),
            steer=min(max(self.steer, -1.0), 1.0),
            brake=min(max(self.brake, 0.0), 1.0),
            hand_brake=bool(self.hand_brake),
            reverse=bool(self.reverse),
        )
        changed = (clipped.throttle, clipped.steer, clipped.brake) != values
        return clipped, changed


@dataclass
class CollisionEvent:
    """carla_msgs/CarlaCollisionEvent: the other actor and the normal impulse [N*s] in world frame."""

    other_actor_id: int
    normal_impulse: tuple[float, float, float]


@dataclass
class LaneInvasionEvent:
    """carla_msgs/CarlaLaneInvasionEvent: the marking types crossed during one tick."""

    crossed_lane_markings: tuple[int, ...]


@dataclass
class Odometry:
    """Ego state in the map frame (ENU, metres, radians, m/s); ``vx``/``vy`` in the body frame."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0
    yaw: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    yaw_rate: float = 0.0


@dataclass
class EgoSituation:
    """Mirror of carla_rl_interfaces/EgoSituation (see the .msg for field meanings)."""

    step_id: int = 0
    episode_id: int = 0
    episode_step: int = 0
    phase: int = 1
    evaluation: bool = False
    on_sidewalk: bool = False
    off_road: bool = False
    lateral_offset_m: float = 0.0
    heading_error_rad: float = 0.0
    lane_width_m: float = 3.5
    traffic_light_state: int = TrafficLightState.UNKNOWN
    traffic_light_distance_m: float = math.inf
    ran_red_light: bool = False
    nearest_actor_distance_m: float = math.inf
    route_remaining_m: float = 0.0
    route_progress_m: float = 0.0
    goal_reached: bool = False
    goal_distance_m: float = math.inf
    goal_heading_error_rad: float = math.nan
    collision_events: int = 0
    lane_invasion_events: int = 0


@dataclass
class SensorFrame:
    """Everything the simulator publishes for one tick.

    ``camera``: [H, W, 3] uint8 RGB in CARLA's semantic palette (bird's-eye, ego at the centre,
    heading up). ``lidar``: [N, 4] float32 (x, y, z, intensity) in the ego frame (x forward, y left).
    ``radar``: [M, 4] float32 (depth m, azimuth rad, altitude rad, velocity m/s) as carla.RadarDetection.
    ``route``: [K, 2] float32 waypoints (map frame) of the ego's route; ``route_version`` changes when
    the route does, so publishers can latch it.
    """

    step_id: int
    sim_time: float
    camera: np.ndarray
    lidar: np.ndarray
    radar: np.ndarray
    odometry: Odometry
    speed: float
    situation: EgoSituation
    route: np.ndarray
    route_version: int = 0
    collisions: list[CollisionEvent] = field(default_factory=list)
    lane_invasions: list[LaneInvasionEvent] = field(default_factory=list)
