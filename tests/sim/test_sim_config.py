"""config/sim.yaml loads into SimConfig; bad keys and values fail with the key in the message."""

from __future__ import annotations

import pytest
import yaml

from carla_rl.contract.config import ConfigError, load_section
from carla_rl.contract.actions import ACTION_NAMES
from carla_rl.sim.sim_config import SimConfig

from sim_helpers import CONFIG_DIR


def _write(tmp_path, params: dict):
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump({"embedded_simulator": {"ros__parameters": params}}))
    return path


def test_yaml_matches_documented_defaults(sim_config):
    assert sim_config == SimConfig()
    assert sim_config.fixed_delta_seconds == pytest.approx(0.05)
    assert [sim_config.action_control(i) for i in range(6)] == [
        getattr(sim_config.actions, name).control() for name in ACTION_NAMES
    ]
    assert sim_config.action_control(3).brake == 1.0
    assert sim_config.action_control(5).reverse


@pytest.mark.parametrize(
    "params, key",
    [
        ({"camera": {"widht": 84}}, "widht"),
        ({"lidar": {"range_m": -1.0}}, "lidar.range_m"),
        ({"vehicle": {"wheelbase_m": 5.0, "length_m": 4.0}}, "vehicle.wheelbase_m"),
        ({"actions": {"turbo": {"throttle": 1.0}}}, "actions"),
        ({"actions": {"brake": {"brake": 2.0}}}, "actions.brake.brake"),
        ({"idm": {"speed_factor_low": 1.5, "speed_factor_high": 1.0}}, "idm.speed_factor_low"),
        ({"fixed_delta_seconds": "fast"}, "fixed_delta_seconds"),
    ],
)
def test_bad_values_name_the_key(tmp_path, params, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_section(_write(tmp_path, params), "embedded_simulator", SimConfig)


def test_real_file_is_a_ros_params_file():
    data = yaml.safe_load((CONFIG_DIR / "sim.yaml").read_text())
    assert set(data) == {"/**", "/**/embedded_simulator"}  # any namespace: /env_i/embedded_simulator
    assert set(data["/**/embedded_simulator"]) == {"ros__parameters"}
    assert set(data["/**"]["ros__parameters"]) == {"actions"}     # shared with the policy node


def test_load_sim_config_and_shared_action_table():
    from carla_rl.contract.actions import load_action_table
    from carla_rl.sim.sim_config import load_sim_config

    cfg = load_sim_config(CONFIG_DIR / "sim.yaml")
    assert cfg.actions == load_action_table(CONFIG_DIR / "sim.yaml")
    assert load_sim_config(CONFIG_DIR / "sim.yaml", {"camera.width": 64}).camera.width == 64
