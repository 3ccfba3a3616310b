from pathlib import Path

import pytest

from carla_rl.contract.config import ConfigError, load_section, to_mapping
from carla_rl.learner.agent_config import (AgentConfig, load_agent_config, network_preset)

AGENT_YAML = Path(__file__).resolve().parents[2] / "config" / "agent.yaml"


def test_agent_yaml_loads_and_matches_defaults():
    cfg = load_agent_config(AGENT_YAML)
    assert to_mapping(cfg) == to_mapping(AgentConfig())
    assert cfg.replay.alpha == 0.6 and cfg.replay.beta_start == 0.4 and cfg.n_atoms == 51


def test_agent_yaml_loads_through_load_section_wrapper():
    from dataclasses import dataclass

    from carla_rl.contract.config import param

    @dataclass
    class PolicyParams:
        agent: AgentConfig = param(default_factory=AgentConfig, description="learner")

    # the node's own keys beside `agent:` belong to PolicyNodeConfig (the ROS shell's module)
    pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    from carla_rl.nodes.dqn_policy_node import PolicyNodeConfig

    node_keys = tuple(PolicyNodeConfig.__dataclass_fields__)
    assert isinstance(load_section(AGENT_YAML, "dqn_policy", PolicyParams, ignore=node_keys).agent, AgentConfig)
    node_cfg = load_section(AGENT_YAML, "dqn_policy", PolicyNodeConfig, ignore=("agent",))
    assert node_cfg == PolicyNodeConfig()  # the file spells out the node's defaults


def test_bad_values_name_the_key(tmp_path):
    bad = tmp_path / "agent.yaml"
    bad.write_text("dqn_policy:\n  ros__parameters:\n    agent:\n      replay: {alpha: 2.0}\n")
    with pytest.raises(ConfigError, match="agent.replay.alpha"):
        load_agent_config(bad)
    bad.write_text("dqn_policy:\n  ros__parameters:\n    agent:\n      v_min: 5.0\n"
                   "      v_max: 1.0\n")
    with pytest.raises(ConfigError, match="v_max"):
        load_agent_config(bad)
    bad.write_text("dqn_policy:\n  ros__parameters:\n    agent:\n      updates_per_graph: 3\n")
    with pytest.raises(ConfigError, match="updates_per_graph .3. must divide target_update_interval .250."):
        load_agent_config(bad)
    bad.write_text("dqn_policy:\n  ros__parameters:\n    agent:\n      no_such_key: 1\n")
    with pytest.raises(ConfigError, match="no_such_key"):
        load_agent_config(bad)


def test_presets():
    nature = network_preset("nature")
    assert nature.conv_channels == [32, 64, 64] and nature.hidden_size == 512
    assert AgentConfig().with_network_preset("nature").network == nature
    with pytest.raises(ConfigError):
        network_preset("huge")


def test_torch_compile_options_follow_the_mode_and_the_combo_switch():
    import dataclasses

    cfg = AgentConfig()
    assert cfg.torch_compile_options == {"combo_kernels": True}
    tuned = dataclasses.replace(cfg, compile_mode="max-autotune-no-cudagraphs",
                                compile_combo_kernels=False)
    assert tuned.torch_compile_options["max_autotune"] is True
    assert "combo_kernels" not in tuned.torch_compile_options


def test_the_cuda_preset_names_only_known_keys_of_the_policy_node_and_the_agent():
    """agent_cuda.yaml is a params file of the policy node too: its node keys are PolicyNodeConfig's."""
    from carla_rl.learner.agent_config import load_device_agent_config

    pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")
    from carla_rl.nodes.dqn_policy_node import PolicyNodeConfig

    cuda_yaml = AGENT_YAML.with_name("agent_cuda.yaml")
    node_cfg = load_section(cuda_yaml, "dqn_policy", PolicyNodeConfig, ignore=("agent",))
    cuda = load_device_agent_config(AGENT_YAML.parent, "cuda")
    assert node_cfg.max_learner_lag_updates >= cuda.updates_per_graph
    with pytest.raises(ConfigError, match="device must be cpu or cuda"):
        load_device_agent_config(AGENT_YAML.parent, "gpu")
