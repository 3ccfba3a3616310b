"""Observation building: semantic bird's-eye frame stack + named vector features.

The vector holds the scalar features (SCALAR_FEATURE_NAMES) followed by the lidar range bins.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

from carla_rl.preprocess.config import LidarBinsConfig, PreprocessConfig, semantic_intensity_lut
from carla_rl.preprocess.validation import (LIDAR_FIELDS, LIDAR_POINT_STEP, validate_image,
                                            validate_lidar, validate_odometry)
from carla_rl.contract.scenario import NUM_ACTIONS
from carla_rl.contract.semantic_palette import PaletteDecoder
from carla_rl.contract.sensor_frame import EgoSituation, Odometry, TrafficLightState

# Traffic light one-hot slots; OFF and UNKNOWN (and no light ahead) share the "none" slot.
TRAFFIC_LIGHT_SLOTS = (("red", TrafficLightState.RED), ("yellow", TrafficLightState.YELLOW),
                       ("green", TrafficLightState.GREEN))

_SIGNALLING_STATES = frozenset(state for _, state in TRAFFIC_LIGHT_SLOTS)

SCALAR_FEATURE_NAMES = (
    "speed",              # speed / speed_scale_mps
    "lateral_speed",      # body-frame vy / lateral_speed_scale_mps
    "yaw_rate",           # yaw rate / yaw_rate_scale_rps
    "heading_error",      # route heading error / pi, in [-1, 1]
    "heading_error_sin",
    "heading_error_cos",
    "lateral_offset",     # offset from lane centre / (lane width / 2); +-1 at the lane edges
    "light_red",
    "light_yellow",
    "light_green",
    "light_none",
    "light_distance",     # distance to the stop line / traffic_light_range_m; none ahead = 1
    "actor_distance",     # nearest other actor / actor_range_m; none = 1
    "route_remaining",    # route remaining / route_remaining_scale_m
)


def lidar_bin_names(count: int) -> tuple[str, ...]:
    width = len(str(count - 1))
    return tuple(f"lidar_bin_{k:0{width}d}" for k in range(count))


def lidar_range_bins(points: np.ndarray, config: LidarBinsConfig) -> np.ndarray:
    """[N, 4] points (ego frame: x forward, y left) -> [count] float32 closest range / max range.

    Bin k covers azimuth [-pi + k w, -pi + (k + 1) w), w = 2 pi / count, azimuth = atan2(y, x):
    0 ahead, +pi/2 left. Bins without a return hold 1.
    """
    bins = np.ones(config.count, dtype=np.float32)
    if len(points) == 0:
        return bins
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    horizontal_range = np.hypot(x, y)
    keep = ((z >= config.min_height_m) & (z <= config.max_height_m)
            & (horizontal_range >= config.min_range_m) & (horizontal_range < config.max_range_m))
    if not keep.any():
        return bins
    azimuth = np.arctan2(y[keep], x[keep])                             # [M] in [-pi, pi]
    sector_width = 2.0 * math.pi / config.count
    index = np.floor((azimuth + math.pi) / sector_width).astype(np.int64) % config.count
    np.minimum.at(bins, index, (horizontal_range[keep] / config.max_range_m).astype(np.float32))
    return bins


def action_mask(allowed_actions: list[int] | tuple[int, ...],
                num_actions: int = NUM_ACTIONS) -> np.ndarray:
    """[num_actions] uint8, 1 = allowed; an empty list allows every action."""
    if not allowed_actions:
        return np.ones(num_actions, dtype=np.uint8)
    mask = np.zeros(num_actions, dtype=np.uint8)
    mask[list(allowed_actions)] = 1
    return mask


class ObservationBuilder:
    """Turns one synchronised tick of sensor data into ``(frames [S, H, W] uint8, vector [V] f32)``.

    Call :meth:`reset` at every episode start; the first :meth:`build` after it fills the whole
    stack with its frame. Inputs are assumed validated (:meth:`validate_image`,
    :meth:`validate_lidar`, :meth:`validate_odometry`).
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._intensity_lut = semantic_intensity_lut(config.semantic_intensity)   # [num_tags]
        self._decode_intensity = PaletteDecoder(self._intensity_lut)              # palette image -> grey
        self._frames = np.zeros((config.frame_stack, config.image_height, config.image_width),
                                dtype=np.uint8)                                     # [S, H, W]
        self._episode_started = False
        self._route = np.zeros((0, 2), dtype=np.float64)      # [K, 2] map frame
        self._route_s = np.zeros(0, dtype=np.float64)          # [K] arc length at each point
        self._route_lists: tuple[list[float], list[float], list[float]] = ([], [], [])  # s, x, y as floats
        self.vector_names: tuple[str, ...] = (SCALAR_FEATURE_NAMES
                                              + route_lookahead_names(config.vector.route_lookahead_m)
                                              + lidar_bin_names(config.lidar.count))

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return self._frames.shape

    @property
    def vector_size(self) -> int:
        return len(self.vector_names)

    def reset(self) -> None:
        self._episode_started = False

    def set_route(self, route: np.ndarray) -> None:
        """The ego's route [K, 2] (map frame; nav_msgs/Path of the simulator). Its arc length is the
        situation's ``route_progress_m``; look-ahead features are zero until a route is set."""
        route = np.asarray(route, dtype=np.float64).reshape(-1, 2)
        self._route = route
        seg = np.linalg.norm(np.diff(route, axis=0), axis=1)
        self._route_s = np.concatenate([[0.0], np.cumsum(seg)]) if len(route) else np.zeros(0)
        self._route_lists = (self._route_s.tolist(), route[:, 0].tolist(), route[:, 1].tolist())

    # -- validation (explicit step; raises SensorDataError) ------------------------------------
    def validate_image(self, data, height: int, width: int, encoding: str,
                       step: int) -> np.ndarray:
        return validate_image(data, height, width, encoding, step,
                              expected_height=self.config.image_height,
                              expected_width=self.config.image_width,
                              expected_encoding=self.config.image_encoding)

    def validate_lidar(self, data, num_points: int | None = None,
                       point_step: int = LIDAR_POINT_STEP,
                       field_names: tuple[str, ...] = LIDAR_FIELDS) -> np.ndarray:
        return validate_lidar(data, num_points, point_step, field_names)

    @staticmethod
    def validate_odometry(odometry: Odometry, speed: float) -> None:
        validate_odometry(odometry, speed)

    # -- building -------------------------------------------------------------------------------
    def semantic_frame(self, camera_rgb: np.ndarray) -> np.ndarray:
        """[H, W, 3] palette image -> [H, W] uint8 grey levels of the semantic classes."""
        return self._decode_intensity(camera_rgb)

    def build(self, camera_rgb: np.ndarray, lidar: np.ndarray, odometry: Odometry, speed: float,
              situation: EgoSituation) -> tuple[np.ndarray, np.ndarray]:
        expected = (self.config.image_height, self.config.image_width, 3)
        if camera_rgb.shape != expected:
            raise ValueError(f"camera image {camera_rgb.shape}, expected {expected}")
        frame = self.semantic_frame(camera_rgb)                                   # [H, W]
        if not self._episode_started:
            self._frames[:] = frame
            self._episode_started = True
        else:
            self._frames[:-1] = self._frames[1:]
            self._frames[-1] = frame
        vector = np.concatenate([self._scalar_features(odometry, speed, situation),
                                 self._route_lookahead(odometry, situation),
                                 lidar_range_bins(lidar, self.config.lidar)])
        return self._frames.copy(), vector.astype(np.float32)

    def _scalar_features(self, odometry: Odometry, speed: float,
                         situation: EgoSituation) -> np.ndarray:
        scales = self.config.vector
        half_lane = max(situation.lane_width_m, 0.0) / 2.0
        lateral = situation.lateral_offset_m / half_lane if half_lane > 0.0 else 0.0
        light_state = situation.traffic_light_state
        light_distance = situation.traffic_light_distance_m
        light_ahead = math.isfinite(light_distance) and light_state in _SIGNALLING_STATES
        one_hot = [float(light_ahead and light_state == state) for _, state in TRAFFIC_LIGHT_SLOTS]
        one_hot.append(float(not light_ahead))
        heading = situation.heading_error_rad
        clip = scales.clip
        values = [
            speed / scales.speed_scale_mps,
            odometry.vy / scales.lateral_speed_scale_mps,
            odometry.yaw_rate / scales.yaw_rate_scale_rps,
            _wrap_angle(heading) / math.pi,
            math.sin(heading),
            math.cos(heading),
            lateral,
            *one_hot,
            _normalised_distance(light_distance if light_ahead else math.inf,
                                 scales.traffic_light_range_m),
            _normalised_distance(situation.nearest_actor_distance_m, scales.actor_range_m),
            situation.route_remaining_m / scales.route_remaining_scale_m,
        ]
        # NaN -> 0, then clipped (inf -> +-clip), in plain floats: 14 values, numpy's per-call cost dominated
        return np.array([0.0 if v != v else min(max(v, -clip), clip) for v in values], dtype=np.float32)


    def _route_lookahead(self, odometry: Odometry, situation: EgoSituation) -> np.ndarray:
        """[2 * L]: (x, y) in the ego frame of the route points ``route_lookahead_m`` ahead."""
        scales = self.config.vector
        ahead = np.asarray(scales.route_lookahead_m, dtype=np.float64)               # [L]
        if len(self._route) < 2:
            return np.zeros(2 * len(ahead), dtype=np.float32)
        # np.interp of each coordinate at the arc lengths ahead, in plain floats (a few points:
        # numpy's per-call cost dominated); NaN propagates as it does through numpy
        route_s, route_x, route_y = self._route_lists
        last = len(route_s) - 1
        end_s = route_s[last]
        cos_yaw, sin_yaw = math.cos(odometry.yaw), math.sin(odometry.yaw)
        scale, clip = scales.route_lookahead_scale_m, scales.clip
        features = []
        for distance in scales.route_lookahead_m:
            s = min(max(situation.route_progress_m + distance, 0.0), end_s)
            upper = min(max(bisect.bisect_right(route_s, s), 1), last)
            lower = upper - 1
            span = route_s[upper] - route_s[lower]
            t = (s - route_s[lower]) / span if span > 0.0 else 0.0
            px = route_x[lower] + t * (route_x[upper] - route_x[lower]) - odometry.x
            py = route_y[lower] + t * (route_y[upper] - route_y[lower]) - odometry.y
            forward = (cos_yaw * px + sin_yaw * py) / scale
            left = (-sin_yaw * px + cos_yaw * py) / scale
            features += [min(max(forward, -clip), clip), min(max(left, -clip), clip)]
        return np.array(features, dtype=np.float32)


def route_lookahead_names(distances: list[float]) -> tuple[str, ...]:
    return tuple(f"route_ahead_{d:g}m_{axis}" for d in distances for axis in ("x", "y"))


def _wrap_angle(angle: float) -> float:
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def _normalised_distance(distance: float, range_m: float) -> float:
    """distance / range clipped to [0, 1]; inf/NaN (nothing there) -> 1."""
    if not math.isfinite(distance):
        return 1.0
    return min(max(distance / range_m, 0.0), 1.0)
