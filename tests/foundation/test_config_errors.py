"""config/*.yaml mistakes fail at load time with a message naming the file and the key."""

import pytest

from carla_rl.contract.config import ConfigError, load_section
from carla_rl.reward import RewardConfig
from carla_rl.contract.scenario import load_phases
from ros_testing import CONFIG_DIR


def write(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("body,needle", [
    ("reward_evaluator:\n  ros__parameters:\n    goal_reward: [1, 2\n", "x.yaml:4:1: invalid YAML"),
    ("reward_evaluator:\n  ros__parameters:\n    goal_rewrd: 300.0\n", "unknown key(s) 'goal_rewrd'"),
    ("reward_evaluator:\n  ros__parameters:\n    goal_reward: lots\n", "goal_reward: expected a number"),
    ("reward_evaluator:\n  ros__parameters:\n    goal_reward: .nan\n", "goal_reward: NaN is not allowed"),
    ("reward_evaluator:\n  parameters: {}\n", "must hold exactly one key, 'ros__parameters'"),
])
def test_bad_reward_yaml(tmp_path, body, needle):
    with pytest.raises(ConfigError) as info:
        load_section(write(tmp_path, body), "reward_evaluator", RewardConfig)
    assert needle in str(info.value)
    assert "x.yaml" in str(info.value)


def test_phase_errors_name_the_phase_and_key(tmp_path):
    text = (CONFIG_DIR / "curriculum.yaml").read_text().replace("num_vehicles: 40", "num_vehicles: -40")
    with pytest.raises(ConfigError, match=r"phases\.phase_9\.scenario\.num_vehicles: -40 is below the minimum 0"):
        load_phases(write(tmp_path, text))
    table = load_phases(write(tmp_path, text), tolerant=True)
    assert isinstance(table[8], ConfigError) and not isinstance(table[7], ConfigError)
    text = (CONFIG_DIR / "curriculum.yaml").read_text().replace("map_name: parking", "map_name: moon")
    with pytest.raises(ConfigError, match="map_name: 'moon' is not one of"):
        load_phases(write(tmp_path, text))
