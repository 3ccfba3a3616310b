"""`carla-rl eval`: per-phase rates for the autopilot, a random policy and a trained checkpoint, with
the markdown table, CSV and PNG chart; evaluation seeds are disjoint from training seeds."""

import csv
import json
import subprocess
import sys

import numpy as np

from carla_rl.contract.seeds import EVAL_SEED_BASE, evaluation_seed, is_evaluation_seed, training_seed


def test_evaluation_and_training_seeds_are_disjoint():
    rng = np.random.default_rng(0)
    for base, env, k in rng.integers(0, 2**31 - 1, (2000, 3)):
        assert training_seed(int(base), int(env) % 64, int(k)) < EVAL_SEED_BASE
        assert is_evaluation_seed(evaluation_seed(int(base), int(env) % 64, int(k)))


def test_eval_report_compares_policies(tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "carla_rl.cli.main", "eval", "--policy", "random", "--compare",
                           "--phases", "1", "--episodes", "2", "--seed", "5", "--json", "--output-dir", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    rows = {(r["policy"], r["phase"]): r for r in data["results"]}
    assert set(rows) == {("random", 1), ("autopilot", 1)}
    assert rows[("autopilot", 1)]["goal_rate"] == 1.0 and rows[("autopilot", 1)]["passed"] is True
    assert rows[("random", 1)]["passed"] is False
    for row in rows.values():
        assert row["episodes"] == 2
        for key in ("goal_rate", "collision_free_rate", "sidewalk_free_rate"):
            assert 0.0 <= row[key] <= 1.0
    with open(out / "evaluation.csv") as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "| autopilot | 1 |" in (out / "evaluation.md").read_text()
    assert (out / "evaluation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # one progress line per evaluated phase and policy on stderr, stdout stays pure JSON
    assert "carla-rl: autopilot phase 1 (forward_only): goal rate 1.00" in proc.stderr
    assert "carla-rl: random phase 1 (forward_only): goal rate" in proc.stderr
