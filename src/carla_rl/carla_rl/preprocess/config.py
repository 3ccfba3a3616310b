"""Configuration of the observation builder.

(``sensor_preprocessor`` block of config/preprocess.yaml)
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from carla_rl.contract.config import param
from carla_rl.contract.semantic_palette import SemanticTag

IMAGE_ENCODINGS = ("rgb8",)

# Which CARLA semantic tags each intensity field of SemanticIntensityConfig paints.
SEMANTIC_TAG_GROUPS: dict[str, tuple[SemanticTag, ...]] = {
    "unlabeled": (SemanticTag.UNLABELED, SemanticTag.SKY, SemanticTag.WATER, SemanticTag.OTHER),
    "nature": (SemanticTag.VEGETATION, SemanticTag.TERRAIN, SemanticTag.GROUND),
    "structure": (SemanticTag.BUILDING, SemanticTag.WALL, SemanticTag.FENCE, SemanticTag.POLE,
                  SemanticTag.STATIC, SemanticTag.DYNAMIC, SemanticTag.BRIDGE,
                  SemanticTag.RAIL_TRACK, SemanticTag.GUARD_RAIL),
    "sidewalk": (SemanticTag.SIDEWALK,),
    "road": (SemanticTag.ROAD,),
    "road_line": (SemanticTag.ROAD_LINE,),
    "traffic_sign": (SemanticTag.TRAFFIC_SIGN,),
    "traffic_light": (SemanticTag.TRAFFIC_LIGHT,),
    "vehicle": (SemanticTag.CAR, SemanticTag.TRUCK, SemanticTag.BUS, SemanticTag.TRAIN,
                SemanticTag.MOTORCYCLE, SemanticTag.BICYCLE),
    "pedestrian": (SemanticTag.PEDESTRIAN, SemanticTag.RIDER),
}

# Classes the policy must tell apart: their intensities must differ pairwise.
DISTINCT_INTENSITY_GROUPS = ("sidewalk", "road", "road_line", "traffic_light", "vehicle",
                             "pedestrian")


@dataclass(frozen=True)
class SemanticIntensityConfig:
    """Grey level [0, 255] of each semantic class in the frames (see SEMANTIC_TAG_GROUPS)."""

    unlabeled: int = param(0, "Unlabeled, sky, water, other", low=0, high=255)
    nature: int = param(25, "Vegetation, terrain, ground", low=0, high=255)
    structure: int = param(50, "Buildings, walls, fences, poles, static/dynamic props, rails",
                           low=0, high=255)
    sidewalk: int = param(80, "Sidewalk", low=0, high=255)
    road: int = param(115, "Road surface", low=0, high=255)
    road_line: int = param(150, "Lane markings", low=0, high=255)
    traffic_sign: int = param(170, "Traffic signs", low=0, high=255)
    traffic_light: int = param(195, "Traffic lights", low=0, high=255)
    vehicle: int = param(225, "Cars, trucks, buses, trains, motorcycles, bicycles", low=0, high=255)
    pedestrian: int = param(255, "Pedestrians and riders", low=0, high=255)

    def validate(self) -> None:
        seen: dict[int, str] = {}
        for group in DISTINCT_INTENSITY_GROUPS:
            value = getattr(self, group)
            if value in seen:
                raise ValueError(f"semantic_intensity.{group} equals semantic_intensity."
                                 f"{seen[value]} ({value}); the policy could not tell them apart")
            seen[value] = group


@dataclass(frozen=True)
class LidarBinsConfig:
    """Lidar point cloud -> polar range bins (closest return per azimuth sector)."""

    count: int = param(36, "Azimuth sectors over 360 deg; bin k covers "
                       "[-pi + k * 2pi / count, -pi + (k + 1) * 2pi / count) of atan2(y, x)",
                       low=1, high=720)
    max_range_m: float = param(50.0, "Ranges are clipped to this and divided by it; empty bin = 1",
                               low=0.1, high=500.0)
    min_height_m: float = param(-1.5, "Points below this z (sensor frame) are ground: ignored",
                                low=-10.0, high=10.0)
    max_height_m: float = param(2.0, "Points above this z (sensor frame) are overhead: ignored",
                                low=-10.0, high=10.0)
    min_range_m: float = param(0.5, "Returns closer than this (ego body) are ignored",
                               low=0.0, high=10.0)

    def validate(self) -> None:
        if self.min_height_m >= self.max_height_m:
            raise ValueError(f"lidar.min_height_m ({self.min_height_m}) must be below "
                             f"lidar.max_height_m ({self.max_height_m})")
        if self.min_range_m >= self.max_range_m:
            raise ValueError(f"lidar.min_range_m ({self.min_range_m}) must be below "
                             f"lidar.max_range_m ({self.max_range_m})")


@dataclass(frozen=True)
class VectorFeatureConfig:
    """Normalisation of the vector features (each feature is divided by its scale, then clipped)."""

    speed_scale_mps: float = param(10.0, "speed / this", low=0.1, high=100.0)
    lateral_speed_scale_mps: float = param(2.0, "body-frame lateral speed vy / this",
                                           low=0.01, high=50.0)
    yaw_rate_scale_rps: float = param(1.0, "yaw rate / this", low=0.01, high=20.0)
    traffic_light_range_m: float = param(50.0, "Light distance / this; no light ahead = 1",
                                         low=1.0, high=1000.0)
    actor_range_m: float = param(30.0, "Nearest actor distance / this; none = 1",
                                 low=1.0, high=1000.0)
    route_remaining_scale_m: float = param(400.0, "Route remaining / this", low=1.0,
                                           high=100000.0)
    clip: float = param(5.0, "Every feature is clipped to [-clip, clip]", low=1.0, high=1000.0)
    route_lookahead_m: list[float] = param(default_factory=lambda: [5.0, 10.0, 20.0, 40.0],
                                           description="Route points this far ahead of the ego's "
                                           "progress become (x, y) features in the ego frame (x forward, "
                                           "y left): where the route turns", low=0.0, high=1000.0)
    route_lookahead_scale_m: float = param(20.0, "Route look-ahead coordinates / this", low=1.0,
                                           high=1000.0)


@dataclass(frozen=True)
class PreprocessConfig:
    """Observation layout: stacked semantic bird's-eye frames plus a vector of named features."""

    frame_stack: int = param(4, "Frames per observation (oldest first)", low=1, high=16)
    image_width: int = param(84, "Expected camera width [px]", low=8, high=2048)
    image_height: int = param(84, "Expected camera height [px]", low=8, high=2048)
    image_encoding: str = param("rgb8", "Expected camera encoding (CityScapes palette colours)",
                                choices=IMAGE_ENCODINGS)
    semantic_intensity: SemanticIntensityConfig = param(
        default_factory=SemanticIntensityConfig, description="Semantic class -> grey level")
    lidar: LidarBinsConfig = param(default_factory=LidarBinsConfig,
                                   description="Lidar range bins")
    vector: VectorFeatureConfig = param(default_factory=VectorFeatureConfig,
                                        description="Vector feature scales")
    sync_max_pending_steps: int = param(8, "Ticks the step synchroniser keeps open at once; older "
                                        "incomplete ticks are dropped", low=1, high=1000)


def semantic_intensity_lut(intensity: SemanticIntensityConfig) -> np.ndarray:
    """[num_tags] uint8 lookup table: SemanticTag value -> grey level."""
    lut = np.zeros(len(SemanticTag), dtype=np.uint8)
    covered: set[SemanticTag] = set()
    for group in (f.name for f in fields(intensity)):
        for tag in SEMANTIC_TAG_GROUPS[group]:
            lut[tag] = getattr(intensity, group)
            covered.add(tag)
    missing = set(SemanticTag) - covered
    if missing:  # a programming error: every tag belongs to exactly one group
        raise AssertionError(f"semantic tags without an intensity group: {sorted(missing)}")
    return lut
