"""``carla-rl chaos`` and ``carla-rl soak``: the graph of ``carla-rl train`` under the supervisor, with an
observer that makes faults (chaos) or samples /proc (soak). The logic lives in :mod:`carla_rl.graph.chaos`."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections import deque
from dataclasses import replace
from pathlib import Path

from carla_rl.graph.chaos import (KILL, Candidate, ChaosReport, FaultPicker, ProcSample, RunFigures, SoakReport,
                            check_checkpoints, episodes_lost, fault_times, longest_gap_s, parse_proc_status,
                            steps_after, unrestarted)


class _Watch:
    """Env steps (TrainingStats) and ended episode ids per env (EpisodeStats), timed from the start."""

    def __init__(self) -> None:
        self.now = 0.0
        self.steps: list[tuple[float, int]] = []
        self.episode_ids: dict[int, list[int]] = {}
        self.restarts: list[tuple[float, str]] = []
        self.reason = ""
        self.state = None
        self.replay_size = 0

    def attach(self, ros, supervisor) -> None:
        from carla_rl.nodes.support.run_watch import run_watch_node

        self.supervisor = supervisor
        ros.add(run_watch_node(self._training, self._episode))

    def _training(self, msg) -> None:
        self.steps.append((self.now, int(msg.env_steps)))
        self.replay_size = int(msg.replay_size)

    def _episode(self, msg) -> None:  # evaluation episodes too: they take ids of the env's sequence
        self.episode_ids.setdefault(int(msg.env_id), []).append(int(msg.episode_id))

    def tick(self, now: float, events: list[str]) -> None:
        self.now = now
        for event in events:
            if ": restarted (#" in event:
                self.restarts.append((now, event.split(": restarted", 1)[0]))

    def end(self, reason: str, state) -> None:
        self.reason, self.state = reason, state

    def figures(self, seconds: float, save_dir: Path) -> RunFigures:
        from carla_rl.learner.checkpoint import verify_checkpoint

        checks = check_checkpoints([str(p) for p in (save_dir / "checkpoints").glob("*.pt")], verify_checkpoint)
        return RunFigures(seconds=seconds, ended_by_itself=self.reason.startswith("stopped after"),
                          end_reason=self.reason, phase=int(self.state.phase if self.state else 0),
                          training_episodes=int(self.state.training_episodes if self.state else 0),
                          env_steps=max((s for _, s in self.steps), default=0),
                          episodes_lost=episodes_lost(self.episode_ids),
                          longest_gap_s=round(longest_gap_s(self.steps, end_s=self.now), 1),
                          checkpoints_verified=checks.verified, corrupt_checkpoints=checks.corrupt)


class _Campaign(_Watch):
    def __init__(self, minutes: float, every_s: float, seed: int, quiet_s: float) -> None:
        super().__init__()
        self.pending = fault_times(minutes, every_s, quiet_s)
        self.picker = FaultPicker(seed)
        self.faults = []
        self.stopped: set[int] = set()

    def tick(self, now: float, events: list[str]) -> None:
        super().tick(now, events)
        sup = self.supervisor
        live = {m.process.pid for m in sup.processes.values() if m.process is not None}
        self.stopped &= live  # a stopped process the supervisor replaced is no longer ours to skip
        if not self.pending or now < self.pending[0]:
            return
        self.pending.pop(0)
        clock = sup.clock()
        candidates = [Candidate(fqn, m.process.pid, m.window.max_crashes - m.window.in_window(clock))
                      for fqn, m in sup.processes.items() if m.process is not None and m.process.poll() is None]
        fault = self.picker.pick(now, candidates, self.stopped)
        if fault is None:
            return
        try:
            os.kill(fault.pid, signal.SIGKILL if fault.kind == KILL else signal.SIGSTOP)
        except ProcessLookupError:
            return
        if fault.kind != KILL:
            self.stopped.add(fault.pid)  # left stopped: the supervisor's liveness check must act
        self.faults.append(fault)
        print(f"carla-rl chaos: {fault.kind} {fault.name} (pid {fault.pid}) at {now:.0f} s", file=sys.stderr,
              flush=True)


def _run(args, config_dir: Path, save_dir: Path, observer, seconds: float) -> None:
    from carla_rl.cli.commands import _graph_options, run_graph

    options = replace(_graph_options(args, training=True), save_dir=str(save_dir.resolve()))
    run_graph(options, config_dir, progress=False, stop_after_s=seconds, observer=observer)


def run_chaos(args, config_dir: Path) -> int:
    from carla_rl.cli.commands import CommandError
    from carla_rl.graph.supervisor import load_supervisor_config

    if args.every <= 0:
        raise CommandError("--every must be > 0")
    seconds = args.minutes * 60.0
    quiet_s = load_supervisor_config(config_dir).heartbeat_timeout_s + args.recover_s
    root = Path(args.save_dir)
    baseline = None
    if args.baseline:
        watch = _Watch()
        _run(args, config_dir, root / "baseline", watch, seconds)
        baseline = watch.figures(seconds, root / "baseline")
    campaign = _Campaign(args.minutes, args.every, args.seed, quiet_s)
    _run(args, config_dir, root / "chaos", campaign, seconds)
    figures = campaign.figures(seconds, root / "chaos")
    restarts: dict[str, int] = {}
    for _, name in campaign.restarts:
        restarts[name] = restarts.get(name, 0) + 1
    report = ChaosReport(
        faults=campaign.faults, restarts=restarts, chaos=figures, baseline=baseline,
        unrestarted=unrestarted(campaign.faults,
                                lambda n, t: sum(1 for rt, rn in campaign.restarts if rn == n and rt >= t)),
        progressed_after_last_fault=bool(campaign.faults) and steps_after(campaign.steps, campaign.faults[-1].at_s))
    _print(report.to_dict(), args.json)
    return 1 if report.problems() else 0


class _Soak(_Watch):
    def __init__(self, warmup_s: float, checkpoints: Path) -> None:
        super().__init__()
        self.warmup_s = warmup_s
        self.transient_prefix = str(checkpoints.resolve()) + os.sep
        self.start: dict[str, tuple[int, ProcSample]] = {}
        self.last: dict[str, tuple[int, ProcSample]] = {}
        self.first: list[dict[str, tuple[int, ProcSample]]] = []  # the samples right after the warm-up
        self.recent: deque[dict[str, tuple[int, ProcSample]]] = deque(maxlen=STEADY_SAMPLES)

    def count_fds(self, pid: int) -> int:
        """Open fds, less those on files under the checkpoint folder: a periodic write in flight holds
        them for a moment (the soak looks for fds that stay)."""
        count = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:  # closed meanwhile
                continue
            count += not target.startswith(self.transient_prefix)
        return count

    def sample(self) -> dict[str, tuple[int, ProcSample]]:
        out = {}
        for fqn, m in self.supervisor.processes.items():
            if m.process is None:
                continue
            pid = m.process.pid
            try:
                rss, threads = parse_proc_status(Path(f"/proc/{pid}/status").read_text())
                fds = self.count_fds(pid)
            except (FileNotFoundError, ProcessLookupError):
                continue
            out[fqn] = (pid, ProcSample(rss, fds, threads))
        return out

    def tick(self, now: float, events: list[str]) -> None:
        super().tick(now, events)
        if now >= self.warmup_s:
            if len(self.first) < STEADY_SAMPLES:
                self.first.append(self.sample())
                self.start, self.replay_start = steady(self.first), self.replay_size
            else:  # the end: the last samples before the stop
                self.recent.append(self.sample())
                self.last, self.replay_end = steady(self.recent), self.replay_size


# fds and threads held for a moment (a state file written atomically, a worker thread) are not growth: each
# end of the soak is the fewest a process had over this many consecutive samples (a few seconds' worth)
STEADY_SAMPLES = 10


def steady(samples) -> dict[str, tuple[int, ProcSample]]:
    """Per process of the newest sample: its RSS, and the fewest fds and threads it had over ``samples``
    (those of the same pid; a restarted process compares with itself only)."""
    out = {}
    for fqn, (pid, newest) in samples[-1].items():
        same = [s[fqn][1] for s in samples if fqn in s and s[fqn][0] == pid]
        out[fqn] = (pid, ProcSample(newest.rss_kb, min(s.fds for s in same), min(s.threads for s in same)))
    return out


def run_soak(args, config_dir: Path) -> int:
    from carla_rl.contract.config import read_yaml

    seconds = args.minutes * 60.0
    if args.warmup_s >= seconds:
        from carla_rl.cli.commands import CommandError

        raise CommandError(f"--warmup-s {args.warmup_s:.0f} must be shorter than the run ({seconds:.0f} s)")
    save_dir = Path(args.save_dir)
    checkpoints = save_dir / "checkpoints"
    soak = _Soak(args.warmup_s, checkpoints)
    _run(args, config_dir, save_dir, soak, seconds)
    disk = sum(p.stat().st_size for p in checkpoints.rglob("*") if p.is_file()) if checkpoints.is_dir() else 0
    # hard-linked replay chunks count once per link here: an upper bound of the real use
    keep_last = int(read_yaml(config_dir / "agent.yaml")["/**/dqn_policy"]["ros__parameters"]["keep_last_checkpoints"])
    restarted = sorted(n for n in soak.start if n in soak.last and soak.last[n][0] != soak.start[n][0])
    report = SoakReport(warmup_s=args.warmup_s, seconds=seconds,
                        start={n: s for n, (_, s) in soak.start.items()},
                        end={n: s for n, (_, s) in soak.last.items() if n not in restarted},
                        checkpoint_bytes=disk, periodic_checkpoints=len(list(checkpoints.glob("episode_*.pt"))),
                        keep_last=keep_last, restarted=restarted,
                        replay_start=getattr(soak, "replay_start", 0), replay_end=getattr(soak, "replay_end", 0))
    _print(report.to_dict(), args.json)
    return 1 if report.problems() else 0


def _print(report: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for key, value in report.items():
        print(f"{key}: {value}")
