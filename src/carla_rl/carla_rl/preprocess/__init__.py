"""Observation building for the sensor_preprocessor node (pure Python, no ROS)."""

from carla_rl.preprocess.config import (LidarBinsConfig, PreprocessConfig, SemanticIntensityConfig,
                                        VectorFeatureConfig, semantic_intensity_lut)
from carla_rl.preprocess.observation import (SCALAR_FEATURE_NAMES, ObservationBuilder, action_mask,
                                             lidar_range_bins)
from carla_rl.preprocess.synchronizer import DropReason, StepBundle, StepSynchronizer
from carla_rl.preprocess.validation import (SensorDataError, SensorDataReason, validate_image,
                                            validate_lidar, validate_odometry)

NODE_NAME = "sensor_preprocessor"

__all__ = [
    "NODE_NAME", "DropReason", "LidarBinsConfig", "ObservationBuilder", "PreprocessConfig",
    "SCALAR_FEATURE_NAMES", "SemanticIntensityConfig", "SensorDataError", "SensorDataReason",
    "StepBundle", "StepSynchronizer", "VectorFeatureConfig", "action_mask", "lidar_range_bins",
    "semantic_intensity_lut", "validate_image", "validate_lidar", "validate_odometry",
]
