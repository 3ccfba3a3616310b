"""RewardConfig loading: shipped file = seed weights, unknown keys name file and key."""

from pathlib import Path

import pytest

from carla_rl.contract.config import ConfigError, load_section
from carla_rl.reward import NODE_NAME, RewardConfig

CONFIG_FILE = Path(__file__).resolve().parents[2] / "config" / "reward.yaml"


def test_shipped_file_holds_the_seed_weights():
    config = load_section(CONFIG_FILE, NODE_NAME, RewardConfig)
    assert config == RewardConfig()
    assert config.collision_penalty == -1000.0
    assert config.sidewalk_penalty == -800.0
    assert config.goal_reward == 300.0
    assert config.proximity_penalty == -15.0
    assert config.traffic_light_compliance_reward == 15.0


def test_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "reward.yaml"
    path.write_text(f"{NODE_NAME}:\n  ros__parameters:\n    colision_penalty: -1.0\n")
    with pytest.raises(ConfigError, match=r"reward\.yaml.*'colision_penalty'"):
        load_section(path, NODE_NAME, RewardConfig)


def test_wrong_sign_is_rejected(tmp_path):
    path = tmp_path / "reward.yaml"
    path.write_text(f"{NODE_NAME}:\n  ros__parameters:\n    collision_penalty: 1000.0\n")
    with pytest.raises(ConfigError, match="collision_penalty"):
        load_section(path, NODE_NAME, RewardConfig)
