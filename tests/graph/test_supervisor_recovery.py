"""Supervisor: nodes killed with SIGKILL mid-training come back. The policy resumes from its last periodic
checkpoint, replay included (a crash costs at most one checkpoint interval): its update counter and replay
size start where the checkpoint left them, a corrupt newest checkpoint is skipped for the previous one, the
curriculum phase is kept and training goes on. A killed simulator restarts and its env keeps producing
episodes; a stalled (SIGSTOP) simulator is detected by its missing heartbeat, killed and restarted; nothing
saved is lost; Ctrl-C-equivalent stop leaves no process behind."""

import os
import re
import signal

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from graph_harness import GraphRun  # noqa: E402
from ros_testing import pid_alive  # noqa: E402

TIMEOUT_S = 300.0
HEARTBEAT_TIMEOUT_S = 10.0
KEEP_LAST = 3  # nodes report every second on /diagnostics
PHASE = 2
MIN_SAVED_UPDATES = 5  # the checkpoint resumed from holds learning: a fresh start (0 updates) cannot pass


def periodic(directory):
    """Periodic checkpoints, newest first (by mtime, as the supervisor picks them)."""
    paths = []
    for path in directory.glob("episode_*.pt"):
        try:
            paths.append((path.stat().st_mtime, path))
        except FileNotFoundError:  # rotated away meanwhile
            continue
    return [p for _, p in sorted(paths, reverse=True)]


class SavedCounters:
    """Update counters of checkpoints on disk (read once per file: main file only, no replay)."""

    def __init__(self) -> None:
        self.updates: dict = {}

    def of(self, path) -> int:
        from carla_rl.learner.checkpoint import CheckpointError, read_file

        if path not in self.updates:
            try:
                self.updates[path] = int(read_file(path)["counters"]["updates"])
            except CheckpointError:  # rotated away while read
                return -1
        return self.updates[path]


def flip_a_byte(path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.ros
@pytest.mark.slow
def test_sigkill_policy_and_simulator(tmp_path):
    from carla_rl.learner.checkpoint import read_checkpoint

    run = GraphRun(tmp_path, num_envs=2, phase=PHASE,
                   policy_params={"checkpoint_every_episodes": 2, "keep_last_checkpoints": KEEP_LAST,
                                  "checkpoint_replay": True, "replay_chunk_slots": 1024},
                   sim_params={"shell.control_timeout_s": 0.2}, heartbeat_timeout_s=HEARTBEAT_TIMEOUT_S)
    checkpoints = run.save_dir / "checkpoints"
    counters = SavedCounters()
    with run.running(2, observer="supervisor_test_observer") as node:
        # two periodic checkpoints, the older of which already holds learning
        run.wait_for(node, lambda: run.learning_ok() and len(periodic(checkpoints)) >= 2
                     and counters.of(periodic(checkpoints)[1]) >= MIN_SAVED_UPDATES, TIMEOUT_S)

        policy = run.managed_of("policy")
        killed = policy.process
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30.0)  # no supervisor poll yet: nothing restarts it before the damage below
        newest, previous = periodic(checkpoints)[:2]
        saved = read_checkpoint(previous)
        saved_updates = saved["counters"]["updates"]
        saved_replay = min(saved["replay"]["total"], saved["replay"]["capacity"])
        assert saved_updates >= MIN_SAVED_UPDATES and saved_replay > 0
        phase_before = run.episodes[-1].phase
        flip_a_byte(newest)  # the newest checkpoint is corrupt: the supervisor must fall back
        log_start = policy.log_path.stat().st_size

        def new_log() -> str:
            return policy.log_path.read_text(errors="replace")[log_start:]

        run.wait_for(node, lambda: "agent on " in new_log(), TIMEOUT_S)  # the new policy built its agent
        resumed = re.search(r"resumed from (\S+): (\d+) updates, (\d+) env steps, replay (\d+)", new_log())
        assert resumed, f"the restarted policy did not resume\n{new_log()}\n{run.supervisor_events}"
        assert resumed.group(1) == str(previous), (resumed.group(0), newest, run.supervisor_events)
        assert int(resumed.group(2)) == saved_updates and int(resumed.group(4)) == saved_replay
        assert any(e.startswith(f"skipping checkpoint {newest}: ") for e in run.supervisor_events), \
            run.supervisor_events
        assert f"/dqn_policy: resuming from {previous}" in run.supervisor_events
        # training goes on from there: counters never below the checkpoint's, updates beyond it
        seen, episodes_seen = len(run.training), len(run.episodes)
        run.wait_for(node, lambda: any(t.updates > saved_updates + 5 for t in run.training[seen:])
                     and len(run.episodes) >= episodes_seen + 2, TIMEOUT_S)
        after = run.training[seen:]
        assert all(t.updates >= saved_updates and t.replay_size >= saved_replay for t in after), \
            [(t.updates, t.replay_size) for t in after]
        assert {e.phase for e in run.episodes[episodes_seen:]} == {phase_before} == {PHASE}

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
    on_disk = periodic(checkpoints)  # the graph stopped: no rotation under way
    assert 1 <= len(on_disk) <= KEEP_LAST, on_disk  # rotation spans policy restarts
    for path in on_disk:
        if path != newest:
            read_checkpoint(path)  # every checkpoint written is intact, replay included
    assert (checkpoints / "final.pt").is_file(), "the stopped policy wrote its final checkpoint"
    assert read_checkpoint(checkpoints / "final.pt")["counters"]["updates"] > saved_updates
