"""numpy / plain dataclasses <-> ROS 2 messages: the project's stand-in for cv_bridge and friends.

Every sequence field is filled from a contiguous buffer (``array.array`` from bytes), which rclpy
accepts without a per-element Python loop; reading uses ``np.frombuffer`` on the message's buffer.
"""

from __future__ import annotations

import array
import math
from typing import Iterable

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry as OdometryMsg
from nav_msgs.msg import Path
from sensor_msgs.msg import Image, PointCloud2, PointField

from carla_rl.learner.collector import Command, Outcome, Tick
from carla_rl.reward.stats import EpisodeStats
from carla_rl.contract.sensor_frame import (CollisionEvent, EgoSituation, LaneInvasionEvent, Odometry,
                                   VehicleControl)
from carla_rl_interfaces.msg import CollisionEvent as CollisionEventMsg
from carla_rl_interfaces.msg import EgoSituation as EgoSituationMsg
from carla_rl_interfaces.msg import EpisodeStats as EpisodeStatsMsg
from carla_rl_interfaces.msg import LaneInvasionEvent as LaneInvasionEventMsg
from carla_rl_interfaces.msg import Observation, StepReward, VehicleCommand
from carla_rl_interfaces.msg import ScenarioConfig as ScenarioConfigMsg
from carla_rl_interfaces.msg import VehicleControl as VehicleControlMsg

NANOSECONDS = 1_000_000_000
MAP_FRAME = "map"
LIDAR_FIELDS = ("x", "y", "z", "intensity")
RADAR_FIELDS = ("range", "azimuth", "elevation", "velocity")


# --- time -----------------------------------------------------------------------------------------
def time_msg(seconds: float) -> Time:
    ns = int(round(seconds * NANOSECONDS))
    return Time(sec=ns // NANOSECONDS, nanosec=ns % NANOSECONDS)


def time_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec / NANOSECONDS


def stamp_nanoseconds(stamp: Time) -> int:
    """An integer key for a stamp (ticks of one simulator have distinct, increasing stamps)."""
    return stamp.sec * NANOSECONDS + stamp.nanosec


def step_id_from_stamp(stamp: Time, fixed_delta_seconds: float) -> int:
    """The simulator tick of a message: its stamp is ``step_id * fixed_delta_seconds``."""
    ns = stamp.sec * NANOSECONDS + stamp.nanosec
    return int(round(ns / (fixed_delta_seconds * NANOSECONDS)))


# --- buffers --------------------------------------------------------------------------------------
def uint8_sequence(values: np.ndarray) -> array.array:
    return array.array("B", np.ascontiguousarray(values, dtype=np.uint8).tobytes())


def float32_sequence(values: np.ndarray | Iterable[float]) -> array.array:
    return array.array("f", np.ascontiguousarray(values, dtype=np.float32).tobytes())


# --- images (cv_bridge stand-in) ------------------------------------------------------------------
_ENCODINGS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def image_msg(image: np.ndarray, stamp: Time, frame_id: str, encoding: str = "rgb8") -> Image:
    """[H, W, C] uint8 -> sensor_msgs/Image (row-major, no padding)."""
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if _ENCODINGS.get(encoding) != channels:
        raise ValueError(f"encoding {encoding!r} does not match {channels} channel(s)")
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(image.shape[0]), int(image.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(image.shape[1] * channels)
    msg.data = uint8_sequence(image)
    return msg


def image_array(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> [H, W, C] uint8 view (no validation: see preprocess.validate_image)."""
    channels = _ENCODINGS[msg.encoding]
    data = np.frombuffer(msg.data, dtype=np.uint8)
    rows = data[: msg.height * msg.step].reshape(msg.height, msg.step)
    return rows[:, : msg.width * channels].reshape(msg.height, msg.width, channels)


# --- point clouds ---------------------------------------------------------------------------------
def point_cloud_msg(points: np.ndarray, names: tuple[str, ...], stamp: Time, frame_id: str) -> PointCloud2:
    """[N, F] float32 -> PointCloud2 with F float32 fields ``names`` (dense, little-endian)."""
    points = np.ascontiguousarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != len(names):
        raise ValueError(f"points must be [N, {len(names)}], got {points.shape}")
    msg = PointCloud2()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height = 1
    msg.width = int(points.shape[0])
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(names)]
    msg.is_bigendian = False
    msg.point_step = 4 * len(names)
    msg.row_step = msg.point_step * msg.width
    msg.is_dense = True
    msg.data = uint8_sequence(points.view(np.uint8))
    return msg


def point_cloud_array(msg: PointCloud2, names: tuple[str, ...]) -> np.ndarray:
    """PointCloud2 -> [N, len(names)] float32 of the named FLOAT32 fields (any field order/padding)."""
    offsets = {f.name: f for f in msg.fields}
    missing = [n for n in names if n not in offsets]
    if missing:
        raise ValueError(f"point cloud lacks field(s) {missing}")
    for n in names:
        if offsets[n].datatype != PointField.FLOAT32:
            raise ValueError(f"point cloud field {n!r} is not FLOAT32")
    count = msg.width * msg.height
    raw = np.frombuffer(msg.data, dtype=np.uint8)
    if raw.size < count * msg.point_step:
        raise ValueError(f"point cloud buffer holds {raw.size} bytes, expected {count * msg.point_step}")
    rows = raw[: count * msg.point_step].reshape(count, msg.point_step)
    out = np.empty((count, len(names)), dtype=np.float32)
    for i, n in enumerate(names):
        off = offsets[n].offset
        out[:, i] = rows[:, off:off + 4].copy().view(np.float32)[:, 0]
    return out


# --- odometry and route ---------------------------------------------------------------------------
def odometry_msg(odom: Odometry, stamp: Time, child_frame_id: str) -> OdometryMsg:
    msg = OdometryMsg()
    msg.header.stamp = stamp
    msg.header.frame_id = MAP_FRAME
    msg.child_frame_id = child_frame_id
    pose = msg.pose.pose
    pose.position.x, pose.position.y, pose.position.z = float(odom.x), float(odom.y), float(odom.z)
    pose.orientation.z = math.sin(odom.yaw / 2.0)
    pose.orientation.w = math.cos(odom.yaw / 2.0)
    msg.twist.twist.linear.x = float(odom.vx)
    msg.twist.twist.linear.y = float(odom.vy)
    msg.twist.twist.angular.z = float(odom.yaw_rate)
    return msg


def odometry_from_msg(msg: OdometryMsg) -> Odometry:
    q = msg.pose.pose.orientation
    yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
    p = msg.pose.pose.position
    t = msg.twist.twist
    return Odometry(p.x, p.y, p.z, yaw, t.linear.x, t.linear.y, t.angular.z)


def path_msg(route: np.ndarray, stamp: Time) -> Path:
    msg = Path()
    msg.header.stamp = stamp
    msg.header.frame_id = MAP_FRAME
    poses = []
    for i, (x, y) in enumerate(route):
        pose = PoseStamped()
        pose.header = msg.header
        pose.pose.position.x, pose.pose.position.y = float(x), float(y)
        if i + 1 < len(route):
            yaw = math.atan2(route[i + 1][1] - y, route[i + 1][0] - x)
        pose.pose.orientation.z = math.sin(yaw / 2.0) if len(route) > 1 else 0.0
        pose.pose.orientation.w = math.cos(yaw / 2.0) if len(route) > 1 else 1.0
        poses.append(pose)
    msg.poses = poses
    return msg


def path_array(msg: Path) -> np.ndarray:
    return np.array([(p.pose.position.x, p.pose.position.y) for p in msg.poses],
                    dtype=np.float32).reshape(-1, 2)


# --- our interfaces -------------------------------------------------------------------------------
_SITUATION_FIELDS = tuple(EgoSituation.__dataclass_fields__)
# (name, the message field's Python type) of each situation field, looked up once
_SITUATION_FIELD_TYPES = tuple((name, type(getattr(EgoSituationMsg(), name))) for name in _SITUATION_FIELDS)


def situation_msg(situation: EgoSituation, stamp: Time, frame_id: str) -> EgoSituationMsg:
    msg = EgoSituationMsg()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    for name, field_type in _SITUATION_FIELD_TYPES:
        setattr(msg, name, field_type(getattr(situation, name)))
    return msg


def situation_from_msg(msg: EgoSituationMsg) -> EgoSituation:
    return EgoSituation(**{name: getattr(msg, name) for name in _SITUATION_FIELDS})


def collision_msg(event: CollisionEvent, stamp: Time, frame_id: str) -> CollisionEventMsg:
    msg = CollisionEventMsg()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.other_actor_id = int(event.other_actor_id)
    msg.normal_impulse.x, msg.normal_impulse.y, msg.normal_impulse.z = map(float, event.normal_impulse)
    return msg


def collision_from_msg(msg: CollisionEventMsg) -> CollisionEvent:
    n = msg.normal_impulse
    return CollisionEvent(int(msg.other_actor_id), (n.x, n.y, n.z))


def lane_invasion_msg(event: LaneInvasionEvent, stamp: Time, frame_id: str) -> LaneInvasionEventMsg:
    msg = LaneInvasionEventMsg()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.crossed_lane_markings = [int(m) for m in event.crossed_lane_markings]
    return msg


def lane_invasion_from_msg(msg: LaneInvasionEventMsg) -> LaneInvasionEvent:
    return LaneInvasionEvent(tuple(int(m) for m in msg.crossed_lane_markings))


def control_msg(control: VehicleControl) -> VehicleControlMsg:
    return VehicleControlMsg(throttle=float(control.throttle), steer=float(control.steer),
                             brake=float(control.brake), hand_brake=bool(control.hand_brake),
                             reverse=bool(control.reverse))


def control_from_msg(msg: VehicleControlMsg) -> VehicleControl:
    return VehicleControl(msg.throttle, msg.steer, msg.brake, msg.hand_brake, msg.reverse)


def scenario_msg(phase: int, scenario) -> ScenarioConfigMsg:
    """carla_rl.contract.scenario.ScenarioConfig -> ScenarioConfig.msg."""
    return ScenarioConfigMsg(
        phase=int(phase), name=scenario.name, map_name=scenario.map_name,
        num_vehicles=int(scenario.num_vehicles), num_pedestrians=int(scenario.num_pedestrians),
        jaywalk_probability=float(scenario.jaywalk_probability), traffic_lights=bool(scenario.traffic_lights),
        parking_goal=bool(scenario.parking_goal), target_speed_mps=float(scenario.target_speed_mps),
        route_length_m=float(scenario.route_length_m), max_episode_steps=int(scenario.max_episode_steps),
        allowed_actions=uint8_sequence(np.asarray(scenario.allowed_actions, dtype=np.uint8)))


def scenario_from_msg(msg: ScenarioConfigMsg):
    """ScenarioConfig.msg -> (phase, carla_rl.contract.scenario.ScenarioConfig), validated like the YAML."""
    from carla_rl.contract.config import from_mapping
    from carla_rl.contract.scenario import ScenarioConfig

    data = dict(name=msg.name, map_name=msg.map_name, num_vehicles=int(msg.num_vehicles),
                num_pedestrians=int(msg.num_pedestrians), jaywalk_probability=float(msg.jaywalk_probability),
                traffic_lights=bool(msg.traffic_lights), parking_goal=bool(msg.parking_goal),
                target_speed_mps=float(msg.target_speed_mps), route_length_m=float(msg.route_length_m),
                max_episode_steps=int(msg.max_episode_steps),
                allowed_actions=[int(a) for a in msg.allowed_actions])
    return int(msg.phase), from_mapping(ScenarioConfig, data, "scenario")


# the scalar fields of EpisodeStats and its message (the per-term sequences are converted apart)
_EPISODE_SCALAR_FIELDS = ("env_id", "episode_id", "phase", "evaluation", "steps", "total_reward",
                          "termination_reason", "goal_reached", "collision", "sidewalk", "red_light_violation",
                          "distance_m", "mean_speed_mps")


def episode_stats_msg(stats: EpisodeStats, stamp: Time) -> EpisodeStatsMsg:
    msg = EpisodeStatsMsg()
    msg.header.stamp = stamp
    for name in _EPISODE_SCALAR_FIELDS:
        setattr(msg, name, type(getattr(msg, name))(getattr(stats, name)))
    msg.term_names = list(stats.term_names)
    msg.term_totals = float32_sequence(stats.term_totals)
    return msg


def episode_stats_from_msg(msg: EpisodeStatsMsg) -> EpisodeStats:
    return EpisodeStats(**{name: getattr(msg, name) for name in _EPISODE_SCALAR_FIELDS},
                        term_names=tuple(msg.term_names), term_totals=tuple(msg.term_totals))


# --- the policy's collector (carla_rl.learner.collector) ----------------------------------------------------
def tick_from_msg(msg: Observation, num_actions: int) -> Tick:
    """An Observation as the collector's tick (arrays are views of the message's buffers; the header
    rides along for the command)."""
    frames = np.frombuffer(msg.frames, dtype=np.uint8).reshape(msg.frame_stack, msg.height, msg.width)
    mask = (np.frombuffer(msg.action_mask, dtype=np.uint8).astype(bool)
            if len(msg.action_mask) == num_actions else None)
    return Tick(msg.env_id, msg.step_id, msg.episode_id, msg.episode_step, frames,
                np.frombuffer(msg.vector, dtype=np.float32), mask, bool(msg.evaluation), msg.header)


def outcome_from_msg(msg: StepReward) -> Outcome:
    return Outcome(msg.env_id, msg.step_id, float(msg.reward), bool(msg.terminated), bool(msg.truncated))


def command_msg(command: Command, controls: list[VehicleControlMsg]) -> VehicleCommand:
    """An action (with its tick's header and the action's control) or a reset request (brake)."""
    if command.reset:
        msg = VehicleCommand(env_id=command.env_id, step_id=command.step_id, action_index=-1,
                             reset_episode=True, evaluation=command.evaluation, q_value=math.nan)
        msg.control.brake = 1.0
        return msg
    msg = VehicleCommand(env_id=command.env_id, step_id=command.step_id, action_index=command.action,
                         control=controls[command.action], q_value=command.q_value)
    if command.context is not None:
        msg.header = command.context
    return msg
