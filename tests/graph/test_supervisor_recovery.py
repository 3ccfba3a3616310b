"""Supervisor: nodes killed with SIGKILL mid-training come back; the policy resumes from the latest
checkpoint and training goes on; a killed simulator restarts and its env keeps producing episodes;
a stalled (SIGSTOP) simulator is detected by its missing heartbeat, killed and restarted;
nothing saved is lost; Ctrl-C-equivalent stop leaves no process behind."""

import os
import signal

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from graph_harness import GraphRun  # noqa: E402
from ros_testing import pid_alive  # noqa: E402

TIMEOUT_S = 300.0
HEARTBEAT_TIMEOUT_S = 10.0
KEEP_LAST = 3  # nodes report every second on /diagnostics


@pytest.mark.ros
@pytest.mark.slow
def test_sigkill_policy_and_simulator(tmp_path):
    from carla_rl.learner.checkpoint import read_checkpoint

    run = GraphRun(tmp_path, num_envs=2, phase=2,
                   policy_params={"checkpoint_every_episodes": 2, "keep_last_checkpoints": KEEP_LAST},
                   sim_params={"shell.control_timeout_s": 0.2}, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    checkpoints = run.save_dir / "checkpoints"
    with run.running(2, observer="supervisor_test_observer") as node:
        assert run.spin_until(node, lambda: run.learning_ok() and any(checkpoints.glob("episode_*.pt")),
                              TIMEOUT_S), run.logs()
        saved = sorted(checkpoints.glob("episode_*.pt"))[-1]
        saved_updates = read_checkpoint(saved)["counters"]["updates"]

        policy_pid = run.pid_of("policy")
        os.kill(policy_pid, signal.SIGKILL)
        assert run.spin_until(node, lambda: not pid_alive(policy_pid), 30.0)
        assert run.spin_until(node, lambda: run.pid_of_safe("policy") not in (None, policy_pid), 60.0), run.logs()
        seen = len(run.training)
        # the new policy process resumed the checkpoint: its update counter starts at or above it
        assert run.spin_until(node, lambda: any(t.updates > saved_updates for t in run.training[seen:]),
                              TIMEOUT_S), run.logs()

        sim_pid = run.pid_of("simulator", env=1)
        episodes_before = sum(1 for e in run.episodes if e.env_id == 1)
        os.kill(sim_pid, signal.SIGKILL)
        assert run.spin_until(node, lambda: run.pid_of_safe("simulator", 1) not in (None, sim_pid), 60.0)
        assert run.spin_until(node, lambda: sum(1 for e in run.episodes if e.env_id == 1) >= episodes_before + 2,
                              TIMEOUT_S), run.logs()
        # a stalled (SIGSTOP) simulator: no heartbeat -> the supervisor kills and restarts it
        stalled_pid = run.pid_of("simulator", env=0)
        episodes_before = sum(1 for e in run.episodes if e.env_id == 0)
        os.kill(stalled_pid, signal.SIGSTOP)
        assert run.spin_until(node, lambda: run.pid_of_safe("simulator", 0) not in (None, stalled_pid),
                              HEARTBEAT_TIMEOUT_S + 60.0), run.logs()
        assert not pid_alive(stalled_pid)
        assert run.spin_until(node, lambda: sum(1 for e in run.episodes if e.env_id == 0) >= episodes_before + 2,
                              TIMEOUT_S), run.logs()
        assert all(run.supervisor.alive().values()), run.logs()
        periodic = sorted(checkpoints.glob("episode_*.pt"))
        assert 1 <= len(periodic) <= KEEP_LAST, periodic  # rotation spans policy restarts
        for path in periodic:
            read_checkpoint(path)  # every checkpoint on disk is intact
    assert (checkpoints / "final.pt").is_file(), "the stopped policy wrote its final checkpoint"
    assert read_checkpoint(checkpoints / "final.pt")["counters"]["updates"] > saved_updates
