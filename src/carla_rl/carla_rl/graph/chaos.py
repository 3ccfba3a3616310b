"""Fault campaign and soak: the logic of ``carla-rl chaos`` and ``carla-rl soak``, free of ROS and processes.

The command layer (:mod:`carla_rl.commands`) runs the real graph under the supervisor and feeds this
module what it sees; everything here works on plain values so it is unit-tested with fakes.

Chaos: every ``every_s`` seconds one process of the graph (chosen by a seeded RNG among those alive,
not stopped, and with restart budget left) gets either SIGKILL or SIGSTOP. A stopped process is
*left stopped*: the supervisor's liveness check (no heartbeat for ``heartbeat_timeout_s``) must find
it, kill it and restart it, as it would a real hang. A process whose crashes within the restart window
would reach ``max_crashes`` with one more fault is not chosen: the campaign tests recovery, not the
crash-loop stop (which ``tests/graph/test_supervisor_recovery.py`` and the unit tests cover).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Callable, Iterable, Sequence

KILL = "kill"  # SIGKILL
STOP = "stop"  # SIGSTOP, left stopped for the liveness check
FAULT_KINDS = (KILL, STOP)


def fault_times(minutes: float, every_s: float, quiet_s: float = 0.0) -> list[float]:
    """Seconds after the start at which a fault is made: every ``every_s``, the first after one
    interval (the graph warms up), none within the last ``quiet_s`` seconds (the time the supervisor
    needs to notice a stopped process and the graph to step again, so every fault's recovery is seen)."""
    if every_s <= 0:
        raise ValueError("every_s must be > 0")
    total = minutes * 60.0 - quiet_s
    times, t = [], every_s
    while t < total - 1e-9:
        times.append(t)
        t += every_s
    return times


@dataclass(frozen=True)
class Candidate:
    """A process the campaign may hit: its supervisor name, pid, and crashes left before a crash loop."""

    name: str
    pid: int
    budget_left: int  # max_crashes - crashes within the window


@dataclass(frozen=True)
class Fault:
    at_s: float
    name: str
    pid: int
    kind: str


class FaultPicker:
    """Seeded victim and fault choice. ``stopped``: pids stopped and not yet replaced (skipped)."""

    def __init__(self, seed: int, kinds: Sequence[str] = FAULT_KINDS) -> None:
        self.rng = random.Random(seed)
        self.kinds = tuple(kinds)
        if not self.kinds or any(k not in FAULT_KINDS for k in self.kinds):
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}")

    def pick(self, at_s: float, candidates: Iterable[Candidate], stopped: set[int]) -> Fault | None:
        eligible = sorted((c for c in candidates if c.pid not in stopped and c.budget_left > 1),
                          key=lambda c: c.name)
        if not eligible:
            return None
        victim = self.rng.choice(eligible)
        return Fault(at_s, victim.name, victim.pid, self.rng.choice(self.kinds))


def episodes_lost(episode_ids: dict[int, Sequence[int]]) -> int:
    """Episodes begun but never ended, from each env's ended episode ids in the order seen. Ids of one
    env grow by one per episode; a skipped id is an episode that ended nowhere, and an id that does not
    grow (the env restarted and counts anew) means the episode open at the restart was lost."""
    lost = 0
    for ids in episode_ids.values():
        for before, after in zip(ids, ids[1:]):
            if after > before:
                lost += after - before - 1
            else:
                lost += 1
    return lost


def longest_gap_s(samples: Sequence[tuple[float, int]], end_s: float | None = None) -> float:
    """Longest stretch of time (s) without env steps growing, from (time, env_steps) samples; with
    ``end_s``, the stretch from the last growth to the end counts too. A count that falls (a policy
    resumed from a checkpoint) is not growth: the gap lasts until it exceeds its previous maximum."""
    if not samples:
        return 0.0
    last_growth_t, top = samples[0]
    gap = 0.0
    for t, steps in samples[1:]:
        if steps > top:
            gap = max(gap, t - last_growth_t)
            last_growth_t, top = t, steps
    if end_s is not None:
        gap = max(gap, end_s - last_growth_t)
    return gap


def steps_after(samples: Sequence[tuple[float, int]], t0: float) -> bool:
    """Whether env steps grew beyond their maximum up to ``t0`` at some time after ``t0``."""
    before = max((s for t, s in samples if t <= t0), default=-1)
    return any(s > before for t, s in samples if t > t0)


@dataclass
class CheckpointCheck:
    verified: int = 0
    corrupt: list[str] = field(default_factory=list)  # "path: reason"


def check_checkpoints(paths: Iterable[str], verify: Callable[[str], object]) -> CheckpointCheck:
    """Run ``verify`` (raising on a bad file) on every path."""
    result = CheckpointCheck()
    for path in sorted(paths):
        try:
            verify(path)
        except Exception as exc:  # noqa: BLE001 -- every failure is a corrupt checkpoint, named
            result.corrupt.append(f"{path}: {exc}")
        else:
            result.verified += 1
    return result


@dataclass
class RunFigures:
    """What one run (with or without faults) measured."""

    seconds: float
    ended_by_itself: bool  # stopped at its time limit, not by a crash loop or an error
    end_reason: str
    phase: int
    training_episodes: int
    env_steps: int
    episodes_lost: int
    longest_gap_s: float
    checkpoints_verified: int
    corrupt_checkpoints: list[str]


@dataclass
class ChaosReport:
    faults: list[Fault]
    restarts: dict[str, int]  # supervisor restarts per process
    chaos: RunFigures
    baseline: RunFigures | None
    unrestarted: list[str]  # killed / stopped processes never restarted
    progressed_after_last_fault: bool

    @property
    def kills(self) -> int:
        return sum(f.kind == KILL for f in self.faults)

    @property
    def stops(self) -> int:
        return sum(f.kind == STOP for f in self.faults)

    def problems(self, max_phase_drop: int = 1) -> list[str]:
        """The goals the run missed (empty: passed)."""
        out = []
        if self.chaos.corrupt_checkpoints:
            out.append(f"{len(self.chaos.corrupt_checkpoints)} corrupt checkpoint(s)")
        if not self.chaos.ended_by_itself:
            out.append(f"the run did not end by itself: {self.chaos.end_reason}")
        if self.unrestarted:
            out.append(f"not restarted: {', '.join(self.unrestarted)}")
        if self.faults and not self.progressed_after_last_fault:
            out.append("env steps did not grow after the last fault")
        if self.baseline is not None and self.chaos.phase < self.baseline.phase - max_phase_drop:
            out.append(f"phase {self.chaos.phase} is more than {max_phase_drop} below the fault-free "
                       f"run's {self.baseline.phase}")
        return out

    def to_dict(self) -> dict:
        return {"kills": self.kills, "stops": self.stops, "faults": [asdict(f) for f in self.faults],
                "restarts": self.restarts, "restarts_total": sum(self.restarts.values()),
                "unrestarted": self.unrestarted, "progressed_after_last_fault": self.progressed_after_last_fault,
                "chaos": asdict(self.chaos), "baseline": asdict(self.baseline) if self.baseline else None,
                "problems": self.problems()}


def unrestarted(faults: Sequence[Fault], restarts_after: Callable[[str, float], int]) -> list[str]:
    """Processes hit by a fault and not restarted after it: ``restarts_after(name, t)`` counts the
    supervisor's restarts of ``name`` at or after time ``t``."""
    return sorted({f.name for f in faults if restarts_after(f.name, f.at_s) < 1})


# --- soak ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcSample:
    rss_kb: int
    fds: int
    threads: int


def parse_proc_status(text: str) -> tuple[int, int]:
    """(VmRSS in kB, Threads) from /proc/<pid>/status."""
    rss = threads = 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
        elif line.startswith("Threads:"):
            threads = int(line.split()[1])
    return rss, threads


@dataclass
class SoakReport:
    warmup_s: float
    seconds: float
    start: dict[str, ProcSample]  # per process, after warm-up
    end: dict[str, ProcSample]
    checkpoint_bytes: int
    periodic_checkpoints: int
    keep_last: int
    restarted: list[str]  # processes whose pid changed: their samples are not comparable
    replay_start: int = 0  # the policy's replay size at the first and last sample (a filling ring grows RSS)
    replay_end: int = 0

    def growth(self) -> dict[str, dict]:
        out = {}
        for name in sorted(set(self.start) & set(self.end)):
            a, b = self.start[name], self.end[name]
            out[name] = {"rss_start_kb": a.rss_kb, "rss_end_kb": b.rss_kb,
                         "rss_growth_pct": 100.0 * (b.rss_kb - a.rss_kb) / a.rss_kb if a.rss_kb else 0.0,
                         "fd_growth": b.fds - a.fds, "thread_growth": b.threads - a.threads}
        return out

    def problems(self, max_rss_growth_pct: float = 5.0) -> list[str]:
        out = []
        for name, g in self.growth().items():
            if g["rss_growth_pct"] >= max_rss_growth_pct:
                out.append(f"{name}: RSS grew {g['rss_growth_pct']:.1f} % after warm-up")
            if g["fd_growth"] > 0:
                out.append(f"{name}: {g['fd_growth']} more open fds")
            if g["thread_growth"] > 0:
                out.append(f"{name}: {g['thread_growth']} more threads")
        if self.periodic_checkpoints > self.keep_last:
            out.append(f"{self.periodic_checkpoints} periodic checkpoints on disk, keep_last is {self.keep_last}")
        if self.restarted:
            out.append(f"restarted during the soak: {', '.join(self.restarted)}")
        if not self.growth():
            out.append("no process sampled at both start and end")
        return out

    def to_dict(self) -> dict:
        return {"warmup_s": self.warmup_s, "seconds": self.seconds, "processes": self.growth(),
                "checkpoint_bytes": self.checkpoint_bytes, "periodic_checkpoints": self.periodic_checkpoints,
                "keep_last_checkpoints": self.keep_last, "restarted": self.restarted,
                "replay_size_start": self.replay_start, "replay_size_end": self.replay_end,
                "problems": self.problems()}
