from pathlib import Path

from carla_rl.learner.learner_benchmark import run_learner_benchmark

AGENT_YAML = Path(__file__).resolve().parents[2] / "config" / "agent.yaml"


def test_benchmark_runs_on_cpu_and_reports_the_contract(capsys):
    result = run_learner_benchmark("cpu", batch_size=8, seconds=0.2, capacity=1500,
                                   config_path=AGENT_YAML, act_repeats=2)
    # one progress line per measured variant on stderr, as the JSON will say
    progress = [line for line in capsys.readouterr().err.splitlines()
                if line.endswith("updates/s")]
    assert progress == [f"{name}: {rate:.1f} updates/s"
                        for name, rate in result["variants_updates_per_s"].items()]
    assert result["eager_updates_per_s"] > 0 and result["updates_per_s"] > 0
    assert result["fast_path"] in ("eager", "device_eager")  # no graphs on CPU
    assert result["bytes_per_transition"] <= 8 * 1024
    assert result["device_replay_bytes_per_transition"] <= 8 * 1024
    assert list(result["act_latency_ms"]) == ["1", "2", "4", "8", "16", "32", "64"]


def test_a_failing_variant_is_reported_with_where_it_failed(monkeypatch, capsys):
    """A variant that raises is reported (type, message and its innermost frames) and the others still run."""
    import carla_rl.learner.learner_benchmark as benchmark

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


def test_every_inductor_flag_patches_its_setting_for_the_variant_only():
    """Each ..._<flag> of INDUCTOR_FLAGS names a real inductor setting, set inside the variant's
    context and restored after it (a misspelt setting would raise here, not on the GPU)."""
    import functools

    import torch._inductor.config as inductor_config

    from carla_rl.learner.learner_benchmark import INDUCTOR_FLAGS, _inductor_settings

    def read(key):
        return functools.reduce(getattr, key.split("."), inductor_config)

    for flag, (key, value) in INDUCTOR_FLAGS.items():
        before = read(key)
        assert before != value, flag  # the flag changes something
        with _inductor_settings({flag, "graph", "compile"}):
            assert read(key) == value, flag
        assert read(key) == before, flag
