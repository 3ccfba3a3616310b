from pathlib import Path

from carla_rl.learner.learner_benchmark import run_learner_benchmark

AGENT_YAML = Path(__file__).resolve().parents[2] / "config" / "agent.yaml"


def test_benchmark_runs_on_cpu_and_reports_the_contract():
    result = run_learner_benchmark("cpu", batch_size=8, seconds=0.2, capacity=1500,
                                   config_path=AGENT_YAML, act_repeats=2)
    assert result["eager_updates_per_s"] > 0 and result["updates_per_s"] > 0
    assert result["fast_path"] in ("eager", "device_eager")  # no graphs on CPU
    assert result["bytes_per_transition"] <= 8 * 1024
    assert result["device_replay_bytes_per_transition"] <= 8 * 1024
    assert list(result["act_latency_ms"]) == ["1", "2", "4", "8", "16", "32", "64"]
