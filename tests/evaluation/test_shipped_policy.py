"""models/policy.pt, the shipped policy: small, loadable, built for today's observation, and still
driving phase 1 as its evaluation table in models/ says (greedy, evaluation seeds: deterministic)."""

from pathlib import Path

from carla_rl.bench.checkpoint import observation_spec
from carla_rl.learner.checkpoint import POLICY_KIND, read_file
from carla_rl.training.evaluation_report import evaluate, make_driver

ROOT = Path(__file__).resolve().parents[2]
POLICY = ROOT / "models" / "policy.pt"
CONFIG = ROOT / "config"


def test_shipped_policy_is_a_small_policy_file_for_todays_observation():
    assert POLICY.stat().st_size <= 5 * 1024 * 1024
    state = read_file(POLICY)
    assert state["kind"] == POLICY_KIND
    spec = observation_spec(CONFIG)
    assert list(state["spec"]) == [spec.frame_stack, spec.height, spec.width, spec.vector_size]


def test_shipped_policy_still_passes_phase_1():
    driver = make_driver(str(POLICY), CONFIG, seed=0, device="cpu")
    [report] = evaluate(driver, [1], episodes=3, seed=0, config_dir=CONFIG)
    assert report.result.goal_rate == 1.0 and report.result.passed
    assert "| policy | 1 | forward_only | 20 | 1.0 |" in (ROOT / "models" / "evaluation.md").read_text()
