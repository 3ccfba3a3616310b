"""PreprocessConfig loading: the shipped file, unknown keys, validation."""

from pathlib import Path

import pytest

from carla_rl.contract.config import ConfigError, load_section
from carla_rl.preprocess import NODE_NAME, ObservationBuilder, PreprocessConfig

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "preprocess.yaml"


def test_shipped_file_loads_and_matches_defaults():
    config = load_section(CONFIG_FILE, NODE_NAME, PreprocessConfig)
    assert config == PreprocessConfig()
    builder = ObservationBuilder(config)
    assert builder.frame_shape == (4, 84, 84)


def write(tmp_path, body: str) -> Path:
    path = tmp_path / "preprocess.yaml"
    path.write_text(f"{NODE_NAME}:\n  ros__parameters:\n{body}")
    return path


def test_unknown_key_names_file_and_key(tmp_path):
    path = write(tmp_path, "    frame_stack: 4\n    frame_stak: 4\n")
    with pytest.raises(ConfigError, match=r"preprocess\.yaml.*'frame_stak'"):
        load_section(path, NODE_NAME, PreprocessConfig)


def test_unknown_nested_key_names_its_path(tmp_path):
    path = write(tmp_path, "    lidar:\n      bins: 12\n")
    with pytest.raises(ConfigError, match=r"preprocess\.yaml.*lidar.*'bins'"):
        load_section(path, NODE_NAME, PreprocessConfig)


def test_out_of_range_and_equal_intensities_are_rejected(tmp_path):
    with pytest.raises(ConfigError, match="frame_stack"):
        load_section(write(tmp_path, "    frame_stack: 0\n"), NODE_NAME, PreprocessConfig)
    with pytest.raises(ConfigError, match="semantic_intensity.vehicle"):
        load_section(write(tmp_path, "    semantic_intensity: {road: 225}\n"), NODE_NAME,
                     PreprocessConfig)
    with pytest.raises(ConfigError, match="image_encoding"):
        load_section(write(tmp_path, "    image_encoding: bgr8\n"), NODE_NAME, PreprocessConfig)
