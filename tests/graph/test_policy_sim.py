"""`carla-rl export-policy` and `carla-rl sim --policy`: a policy file drives env 0 through the graph.

The policy file is exported from a checkpoint of an agent built for the observation the preprocessor of
config/ makes; the sim command must load it into the policy node (evaluation mode) and act on the first
observation. The test waits on the policy node's log lines (with a deadline), then interrupts the run.
"""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.bench.checkpoint import observation_spec  # noqa: E402
from carla_rl.contract.actions import NUM_ACTIONS  # noqa: E402
from carla_rl.learner.agent_config import load_device_agent_config  # noqa: E402
from carla_rl.learner.checkpoint import save_checkpoint  # noqa: E402
from carla_rl.learner.dqn_agent import DQNAgent  # noqa: E402

CONFIG = Path(__file__).resolve().parents[2] / "config"
DEADLINE_S = 240.0


def _cli(*args):
    return [sys.executable, "-m", "carla_rl.cli", *args]


def _wait_for(path_of_log, pattern, proc, deadline):
    while time.monotonic() < deadline:
        log = path_of_log()
        if log is not None and log.is_file() and re.search(pattern, log.read_text(errors="replace")):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


def test_exported_policy_drives_env_0_in_the_graph(tmp_path):
    agent = DQNAgent(observation_spec(CONFIG), NUM_ACTIONS, load_device_agent_config(CONFIG, "cpu"), seed=1)
    checkpoint = save_checkpoint(agent, tmp_path / "final.pt")
    policy = tmp_path / "models" / "policy.pt"
    done = subprocess.run(_cli("export-policy", str(checkpoint), str(policy)), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert policy.is_file() and "wrote" in done.stdout
    again = subprocess.run(_cli("export-policy", str(checkpoint), str(policy)), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 1 and "exists" in again.stderr

    err_path = tmp_path / "sim.err"
    with open(err_path, "w") as err:
        proc = subprocess.Popen(_cli("sim", "--policy", str(policy), "--time-scale", "0"), stdout=subprocess.DEVNULL,
                                stderr=err, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def policy_log():
        found = re.search(r"logs in (\S+)", err_path.read_text(errors="replace"))
        if not found:
            return None
        logs = sorted(Path(found.group(1).rstrip(",")).glob("*dqn_policy*"))
        return logs[0] if logs else None

    try:
        deadline = time.monotonic() + DEADLINE_S
        assert _wait_for(policy_log, rf"resumed from {re.escape(str(policy))}", proc, deadline), \
            err_path.read_text()[-3000:]
        assert _wait_for(policy_log, r"agent on cpu: observation", proc, deadline), policy_log().read_text()[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    assert code == 0, err_path.read_text()[-3000:]
