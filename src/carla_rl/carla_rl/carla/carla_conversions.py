"""Pure conversions between CARLA data and our plain data (``carla_rl.contract.sensor_frame``).

Frames: CARLA is left-handed (x forward, y right, z up; angles in degrees, yaw clockwise seen from
above). Our contract (like the ROS bridge) is ENU / right-handed (x forward, y left, z up; radians,
yaw counter-clockwise): ``y -> -y``, ``yaw -> -yaw``, ``pitch -> -pitch``, ``roll`` unchanged.

The functions take carla objects duck-typed (anything with ``.x/.y/.z``, ``.location/.rotation``,
``.raw_data/.height/.width``), so they run on real ``carla`` types (constructible without a server:
Transform, Location, Rotation, Vector3D, VehicleControl) and on test doubles for sensor data.
Nothing here imports ``carla`` at module level; :func:`to_carla_control` imports it when called.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from carla_rl.contract.semantic_palette import PALETTE, SemanticTag
from carla_rl.contract.sensor_frame import (
    CollisionEvent,
    LaneInvasionEvent,
    Odometry,
    TrafficLightState,
    VehicleControl,
)


def wrap_angle(angle: float) -> float:
    """Wrap to [-pi, pi)."""
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


# ---------------------------------------------------------------------------------------------
# Poses and motion


def location_to_enu(location: Any) -> tuple[float, float, float]:
    """carla.Location / Vector3D (left-handed) -> (x, y, z) ENU."""
    return float(location.x), -float(location.y), float(location.z)


def enu_to_location_xyz(x: float, y: float, z: float = 0.0) -> tuple[float, float, float]:
    """ENU point -> CARLA (x, y, z) (the inverse of :func:`location_to_enu`)."""
    return float(x), -float(y), float(z)


def rotation_to_rpy(rotation: Any) -> tuple[float, float, float]:
    """carla.Rotation (degrees, left-handed) -> (roll, pitch, yaw) radians, right-handed."""
    return (math.radians(rotation.roll), -math.radians(rotation.pitch),
            wrap_angle(-math.radians(rotation.yaw)))


def rpy_to_rotation_deg(roll: float, pitch: float, yaw: float) -> tuple[float, float, float]:
    """(roll, pitch, yaw) radians ENU -> CARLA (pitch, yaw, roll) degrees (carla.Rotation's order)."""
    return -math.degrees(pitch), -math.degrees(yaw), math.degrees(roll)


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """Z-Y-X Euler (ROS convention) -> quaternion (x, y, z, w)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about z, radians) of a quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def transform_to_odometry(transform: Any, velocity: Any = None, angular_velocity: Any = None) -> Odometry:
    """carla.Transform (+ world velocity [m/s], angular velocity [deg/s]) -> ENU :class:`Odometry`.

    ``vx``/``vy`` are in the body frame (x forward, y left); ``yaw_rate`` in rad/s, counter-clockwise.
    """
    x, y, z = location_to_enu(transform.location)
    _, _, yaw = rotation_to_rpy(transform.rotation)
    vx = vy = yaw_rate = 0.0
    if velocity is not None:
        wx, wy, _ = location_to_enu(velocity)
        c, s = math.cos(yaw), math.sin(yaw)
        vx, vy = c * wx + s * wy, -s * wx + c * wy
    if angular_velocity is not None:
        yaw_rate = -math.radians(float(angular_velocity.z))
    return Odometry(x=x, y=y, z=z, yaw=yaw, vx=vx, vy=vy, yaw_rate=yaw_rate)


def forward_speed(transform: Any, velocity: Any) -> float:
    """Signed speed along the vehicle's heading [m/s] (negative when reversing), like the bridge's
    speedometer."""
    pitch, yaw = math.radians(transform.rotation.pitch), math.radians(transform.rotation.yaw)
    fx, fy, fz = math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch)
    return float(velocity.x) * fx + float(velocity.y) * fy + float(velocity.z) * fz


def mount_to_transform(mount: Any):
    """:class:`~carla_rl.carla.carla_config.SensorMount` -> carla.Transform (CARLA frame, degrees)."""
    import carla

    return carla.Transform(carla.Location(x=mount.x, y=mount.y, z=mount.z),
                           carla.Rotation(pitch=mount.pitch, yaw=mount.yaw, roll=mount.roll))


# ---------------------------------------------------------------------------------------------
# Controls


def to_carla_control(control: VehicleControl):
    """Our :class:`VehicleControl` (sanitized first) -> carla.VehicleControl. Same sign conventions."""
    import carla

    safe, _ = control.sanitized()
    return carla.VehicleControl(throttle=float(safe.throttle), steer=float(safe.steer),
                                brake=float(safe.brake), hand_brake=bool(safe.hand_brake),
                                reverse=bool(safe.reverse), manual_gear_shift=False, gear=0)


def from_carla_control(control: Any) -> VehicleControl:
    """carla.VehicleControl (or carla_msgs/CarlaEgoVehicleControl) -> our :class:`VehicleControl`."""
    return VehicleControl(throttle=float(control.throttle), steer=float(control.steer),
                          brake=float(control.brake), hand_brake=bool(control.hand_brake),
                          reverse=bool(control.reverse))


# ---------------------------------------------------------------------------------------------
# Sensor buffers


def _bytes(raw: Any) -> Any:
    return raw if isinstance(raw, (bytes, bytearray, memoryview)) else bytes(raw)


def _buffer(raw: Any) -> np.ndarray:
    return np.frombuffer(_bytes(raw), dtype=np.uint8)


def bgra_to_rgb(raw: Any, height: int, width: int) -> np.ndarray:
    """carla.Image raw data (BGRA uint8, row-major) -> [H, W, 3] uint8 RGB (a copy)."""
    data = _buffer(raw)
    if data.size != height * width * 4:
        raise ValueError(f"image buffer has {data.size} bytes, expected {height}x{width}x4")
    bgra = data.reshape(height, width, 4)
    return np.ascontiguousarray(bgra[..., 2::-1])


def semantic_raw_to_rgb(raw: Any, height: int, width: int) -> np.ndarray:
    """Raw semantic segmentation image (tag in the red channel) -> [H, W, 3] CityScapes RGB.

    Same result as ``image.convert(carla.ColorConverter.CityScapesPalette)`` followed by
    :func:`bgra_to_rgb`, using our palette table (unknown tags -> UNLABELED).
    """
    data = _buffer(raw)
    if data.size != height * width * 4:
        raise ValueError(f"image buffer has {data.size} bytes, expected {height}x{width}x4")
    tags = data.reshape(height, width, 4)[..., 2]
    tags = np.where(tags < len(PALETTE), tags, SemanticTag.UNLABELED)
    return PALETTE[tags]


def lidar_raw_to_points(raw: Any) -> np.ndarray:
    """carla.LidarMeasurement raw data (float32 x, y, z, intensity; left-handed sensor frame) ->
    [N, 4] float32 in our frame (x forward, y left): y is negated."""
    data = np.frombuffer(_bytes(raw), dtype=np.float32)
    if data.size % 4:
        raise ValueError(f"lidar buffer of {data.size} floats is not a multiple of 4")
    points = data.reshape(-1, 4).copy()
    points[:, 1] *= -1.0
    return points


def radar_raw_to_detections(raw: Any) -> np.ndarray:
    """carla.RadarMeasurement raw data (float32 velocity, azimuth, altitude, depth per detection) ->
    [M, 4] float32 (depth m, azimuth rad, altitude rad, velocity m/s), the SensorFrame layout."""
    data = np.frombuffer(_bytes(raw), dtype=np.float32)
    if data.size % 4:
        raise ValueError(f"radar buffer of {data.size} floats is not a multiple of 4")
    vel_az_alt_depth = data.reshape(-1, 4)
    return np.ascontiguousarray(vel_az_alt_depth[:, [3, 1, 2, 0]])


def radar_detections_to_array(detections: Any) -> np.ndarray:
    """Iterable of carla.RadarDetection -> [M, 4] float32 (depth, azimuth, altitude, velocity)."""
    rows = [(d.depth, d.azimuth, d.altitude, d.velocity) for d in detections]
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


# ---------------------------------------------------------------------------------------------
# Events and traffic lights


def collision_to_event(event: Any) -> CollisionEvent:
    """carla.CollisionEvent (``other_actor``, ``normal_impulse`` left-handed) -> :class:`CollisionEvent`.

    The impulse is kept in CARLA's world frame like the ROS bridge does (it copies x, y, z as is).
    """
    other = getattr(event, "other_actor", None)
    other_id = int(other.id) if other is not None else 0
    imp = event.normal_impulse
    return CollisionEvent(other_actor_id=other_id, normal_impulse=(float(imp.x), float(imp.y), float(imp.z)))


def lane_invasion_to_event(event: Any) -> LaneInvasionEvent:
    """carla.LaneInvasionEvent -> :class:`LaneInvasionEvent` (``LaneMarking.type`` values, as the bridge)."""
    return LaneInvasionEvent(crossed_lane_markings=tuple(int(m.type) for m in event.crossed_lane_markings))


_LIGHT_STATE_NAMES = {"Red": TrafficLightState.RED, "Yellow": TrafficLightState.YELLOW,
                      "Green": TrafficLightState.GREEN, "Off": TrafficLightState.OFF,
                      "Unknown": TrafficLightState.UNKNOWN}


def traffic_light_state(state: Any) -> TrafficLightState:
    """carla.TrafficLightState (enum value or name) -> :class:`TrafficLightState` (carla_msgs numbering)."""
    if state is None:
        return TrafficLightState.UNKNOWN
    name = getattr(state, "name", None) or str(state).split(".")[-1]
    if name in _LIGHT_STATE_NAMES:
        return _LIGHT_STATE_NAMES[name]
    try:  # carla.TrafficLightState: Red=0, Yellow=1, Green=2, Off=3, Unknown=4 (same as carla_msgs)
        return TrafficLightState(int(state))
    except (TypeError, ValueError):
        return TrafficLightState.UNKNOWN
