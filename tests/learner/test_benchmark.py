import dataclasses
from pathlib import Path

import pytest

from carla_rl.contract.config import ConfigError, to_mapping
from carla_rl.learner.agent_config import load_agent_config
from carla_rl.bench.learner import SWITCH_FLAGS, run_learner_benchmark, variant_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
AGENT_YAML = CONFIG_DIR / "agent.yaml"
# the variant docs/BENCHMARKS.md measured at 3,076-3,105 updates/s (2026-11-27, commit a025001)
MEASURED_VARIANT = "graph_compile_bf16_s2d_copt_crep_cnoise_par_grp_maxat_x8_pf_flat_s2dl_combo_sci"


def test_benchmark_runs_on_cpu_and_reports_the_contract(capsys):
    result = run_learner_benchmark("cpu", batch_size=8, seconds=0.2, capacity=1500,
                                   config_dir=CONFIG_DIR, act_repeats=2,
                                   variants=("eager", "shipped", "device_eager"))
    # one progress line per measured variant on stderr, as the JSON will say
    progress = [line for line in capsys.readouterr().err.splitlines()
                if line.endswith("updates/s")]
    assert progress == [f"{name}: {rate:.1f} updates/s"
                        for name, rate in result["variants_updates_per_s"].items()]
    assert result["eager_updates_per_s"] > 0 and result["updates_per_s"] > 0
    assert result["fast_path"] in ("eager", "shipped", "device_eager")  # no graphs on CPU
    assert result["bytes_per_transition"] <= 8 * 1024
    assert result["device_replay_bytes_per_transition"] <= 8 * 1024
    assert list(result["act_latency_ms"]) == ["1", "2", "4", "8", "16", "32", "64"]


def test_a_failing_variant_is_reported_with_where_it_failed(monkeypatch, capsys):
    """A variant that raises is reported (type, message and its innermost frames) and the others still run."""
    import carla_rl.bench.learner as benchmark

    def broken_updater(*args, **kwargs):
        return ()[1]  # IndexError, as a compiled path can raise deep inside

    monkeypatch.setattr(benchmark, "FastUpdater", broken_updater)
    result = run_learner_benchmark("cpu", batch_size=8, seconds=0.1, capacity=1500,
                                   variants=("eager", "device_eager"), act_repeats=1)
    assert result["fast_path"] == "eager" and "device_eager" not in result["variants_updates_per_s"]
    error = result["variant_errors"]["device_eager"]
    assert error.startswith("IndexError: tuple index out of range (at ")
    assert "broken_updater" in error
    assert f"device_eager: failed: {error}" in capsys.readouterr().err.splitlines()


def test_the_cuda_preset_is_exactly_the_measured_benchmark_variant():
    """config/agent_cuda.yaml over agent.yaml sets every fast-path switch as the variant of
    docs/BENCHMARKS.md (3,076-3,105 updates/s on an H100) does, at its batch size 256."""
    from carla_rl.learner.agent_config import (FAST_PATH_FIELDS, load_agent_config,
                                               load_device_agent_config)

    cpu = load_agent_config(AGENT_YAML)
    cuda = load_device_agent_config(CONFIG_DIR, "cuda:0")
    # the replay is larger on CUDA (a longer memory at the GPU machine's env rate); the benchmark
    # fills a replay of its own size (--capacity), so it measures the update, not the capacity
    assert cuda.replay == dataclasses.replace(cpu.replay, capacity=1_000_000)
    measured = dataclasses.replace(variant_config(cpu, MEASURED_VARIANT), batch_size=256, replay=cuda.replay)
    assert to_mapping(cuda) == to_mapping(measured)
    assert cuda.updates_per_graph == 8 and cuda.batch_size == 256
    # the CPU config keeps today's values; every difference is a fast-path switch or the batch
    cpu_map, cuda_map = to_mapping(cpu), to_mapping(cuda)
    changed = {key for key in cpu_map if cpu_map[key] != cuda_map[key]}
    assert changed - set(FAST_PATH_FIELDS) == {"batch_size", "target_update_interval", "replay"}
    assert load_device_agent_config(CONFIG_DIR, "cpu") == cpu


def test_variant_flags_turn_on_only_the_switches_they_name():
    from carla_rl.learner.agent_config import AgentConfig

    base = load_agent_config(AGENT_YAML)
    plain = variant_config(base, "graph")
    assert plain.cuda_graphs and not plain.compile and plain.mixed_precision == "off"
    assert not any(getattr(plain, field) for field in SWITCH_FLAGS.values())
    s2dl = variant_config(base, "graph_s2dl_x4")
    assert s2dl.space_to_depth and s2dl.space_to_depth_later_convs and s2dl.updates_per_graph == 4
    assert s2dl.target_update_interval == 252  # 250 rounded up to a multiple of 4
    assert variant_config(AgentConfig(), "device_eager").cuda_graphs is False


def test_the_shipped_variant_runs_the_device_config_as_training_calls_it(tmp_path):
    """On CPU the shipped config is agent.yaml (the eager update); its batch size comes from the
    config unless one is given, and a config directory without the device's preset is an error
    naming the file."""
    result = run_learner_benchmark("cpu", seconds=0.1, capacity=1500, act_repeats=1,
                                   config_dir=CONFIG_DIR)
    assert set(result["variants_updates_per_s"]) == {"eager", "shipped"}
    assert result["batch_size"] == load_agent_config(AGENT_YAML).batch_size
    assert result["shipped_updates_per_s"] > 0 and result["shipped_config"]["cuda_graphs"] is True
    import shutil

    shutil.copy(AGENT_YAML, tmp_path / "agent.yaml")
    with pytest.raises(ConfigError, match="agent_cuda.yaml: missing"):
        run_learner_benchmark("cuda", seconds=0.1, capacity=1500, config_dir=tmp_path)


def test_an_unknown_variant_flag_is_an_error_naming_it():
    """A misspelt or removed flag (here the removed `_clw`) would measure another variant under its
    name: the run refuses it before filling the replay."""
    with pytest.raises(ConfigError, match="unknown flag\\(s\\) 'clw'.*s2dl"):
        run_learner_benchmark("cpu", seconds=0.1, capacity=1500, variants=("eager", "graph_clw"))
