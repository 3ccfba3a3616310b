"""`carla-rl chaos` and `carla-rl soak`, short versions of the reliability goals (docs/RELIABILITY.md).

Chaos: 2 minutes of training (2 envs) with a SIGKILL or SIGSTOP of a random graph process every 20 s
(the supervisor's heartbeat_timeout_s lowered to 10 s so a stopped process is found within the run):
no corrupt checkpoint, the run ends by itself at its time limit, env steps grow after the last fault,
every process hit is restarted.

Soak: 2.5 minutes of training; the first sample after a warm-up of 75 s, the last at the end. Warm-up
here means: the processes have started and the replay ring has gone round once (capacity lowered to
2,000 slots with chunks of 500, so the ring's pages are all touched and the periodic checkpoints (every
2 episodes) are rotating before the first sample), in one phase: the run starts in phase 3 and holds it (no
evaluation before the phase's budget of 300 episodes, no review episodes of earlier phases), since another
phase's scenario (map, traffic) legitimately changes the simulators' memory. Bounds as for the long soak:
RSS growth < 5 %, no fd or thread growth, periodic checkpoints on disk <= keep_last_checkpoints.
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

CONFIG = Path(__file__).resolve().parents[2] / "config"


def config_copy(tmp_path, graph_subs=(), agent_subs=(), curriculum_subs=()):
    config = tmp_path / "config"
    shutil.copytree(CONFIG, config)
    for name, subs in (("graph.yaml", graph_subs), ("agent.yaml", agent_subs), ("curriculum.yaml", curriculum_subs)):
        text = (config / name).read_text()
        for pattern, repl in subs:
            text, n = re.subn(pattern, repl, text, flags=re.M)
            assert n == 1, pattern
        (config / name).write_text(text)
    return config


def run_cli(args, timeout_s):
    proc = subprocess.Popen([sys.executable, "-m", "carla_rl.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"carla-rl {args[2]} ran past {timeout_s} s\n{err[-4000:]}")
    return proc.returncode, out, err


@pytest.mark.ros
@pytest.mark.slow
def test_chaos_two_minutes_fault_every_20_s(tmp_path):
    config = config_copy(tmp_path, graph_subs=[(r"^(\s+heartbeat_timeout_s:) 30\.0", r"\1 10.0")],
                         agent_subs=[(r"^(\s+checkpoint_every_episodes:) 50", r"\1 4")])
    code, out, err = run_cli(["--config", str(config), "chaos", "--minutes", "2", "--every", "20",
                              "--parallel-envs", "2", "--seed", "3", "--save-dir", str(tmp_path / "run"), "--json"],
                             timeout_s=170)
    report = json.loads(out)
    assert report["problems"] == [], (report, err[-4000:])
    assert code == 0
    assert report["kills"] + report["stops"] >= 2, report  # faults at 20, 40, 60 s (none in the last 40 s)
    chaos = report["chaos"]
    assert chaos["corrupt_checkpoints"] == [] and chaos["checkpoints_verified"] >= 1
    assert chaos["ended_by_itself"], chaos["end_reason"]
    assert report["progressed_after_last_fault"] and report["unrestarted"] == []
    assert report["restarts_total"] >= report["kills"] + report["stops"]


@pytest.mark.ros
@pytest.mark.slow
def test_soak_short_no_growth_after_warmup(tmp_path):
    config = config_copy(tmp_path, agent_subs=[(r"^(\s+capacity:) 100000", r"\1 2000"),
                                               (r"^(\s+replay_chunk_slots:) 4096", r"\1 500"),
                                               (r"^(\s+checkpoint_every_episodes:) 50", r"\1 2")],
                         curriculum_subs=[(r"^(\s+evaluate_every_episodes:) 25", r"\1 0"),
                                          (r"^(\s+review_share:) 0.2", r"\1 0.0")])
    code, out, err = run_cli(["--config", str(config), "soak", "--minutes", "2.5", "--warmup-s", "75",
                              "--parallel-envs", "2", "--phase", "3", "--save-dir", str(tmp_path / "run"),
                              "--json"],
                             timeout_s=175)
    report = json.loads(out)
    assert report["processes"], (report, err[-4000:])
    assert report["problems"] == [], (report, err[-4000:])
    assert code == 0
    assert report["periodic_checkpoints"] <= report["keep_last_checkpoints"]
