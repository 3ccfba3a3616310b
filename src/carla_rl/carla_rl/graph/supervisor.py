"""Runs the graph's nodes as child processes and keeps them alive.

- Every process of the graph (:func:`carla_rl.graph.group_processes`: a node alone, ``python -m
  carla_rl.nodes.<exe>_node --ros-args ...``, or a component container hosting several) runs in its
  own process group, bound to die with the supervisor (PR_SET_PDEATHSIG).
- Liveness is per node: every node publishes a /diagnostics status (its heartbeat). A process is hung
  when none of its nodes was heard for ``heartbeat_timeout_s``, when one of them was not heard for
  ``node_heartbeat_timeout_s`` while the others were (a hung node inside a container whose other
  nodes still run), or when a node was not heard at all within ``startup_timeout_s`` of the start.
  The single-node limit is the longer one: on a loaded machine the watcher misses single nodes'
  heartbeats for long stretches (a busy container with 16 nodes, 24 envs on 2 cores: one node unheard
  for 30 s while the others were heard within 1-11 s), which must not kill a working container. All
  three are set in config/graph.yaml (``supervisor``). A node that knows it will be busy (the policy
  while its learner compiles for the first time) announces a silence in its status
  (``expected_silence_s``), accepted up to ``max_expected_silence_s``.
- A process that exits, or is hung (killed first), is restarted with exponential backoff (a container
  with all its nodes); the policy comes back from the newest *valid* checkpoint in the save directory
  (:func:`latest_checkpoint`). The restart budget is a sliding window (:class:`RestartWindow`): a
  process that crashes ``max_crashes`` times within ``restart_window_s`` ends the run with one message
  naming it, its nodes and the last lines of its log.
- ``stop()``: SIGINT to every process (the policy writes its final checkpoint), wait, then SIGKILL what
  is left: no orphan process.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from carla_rl.contract.config import param
from carla_rl.graph import NodeSpec, ProcessSpec, group_processes, process_arguments

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    os.setpgrp()


SUPERVISOR_SECTION = "supervisor"  # its block in config/graph.yaml
GRAPH_CONFIG_FILE = "graph.yaml"


@dataclass(frozen=True)
class SupervisorConfig:
    restart_backoff_s: float = param(1.0, "First restart delay [s]; doubles per crash within the window",
                                     low=0.0, high=3600.0)
    max_backoff_s: float = param(30.0, "Longest restart delay [s]", low=0.0, high=3600.0)
    max_crashes: int = param(5, "Crashes of one process within restart_window_s that end the run",
                             low=1, high=10_000)
    restart_window_s: float = param(600.0, "Sliding window of the restart budget [s]", low=1.0,
                                    high=1e7)
    heartbeat_timeout_s: float = param(30.0, "No /diagnostics from any node of a process for this long "
                                       "[s]: hung, restarted", low=1.0, high=86_400.0)
    node_heartbeat_timeout_s: float = param(120.0, "One node of a process unheard for this long while "
                                            "others are heard [s]: the process is hung, restarted",
                                            low=1.0, high=86_400.0)
    startup_timeout_s: float = param(120.0, "A node not heard since its process (re)started is silent only "
                                     "after this long [s] (imports and setup on a loaded machine take "
                                     "longer than a heartbeat gap)", low=1.0, high=86_400.0)
    max_expected_silence_s: float = param(900.0, "Longest silence [s] a node may announce in its "
                                          "/diagnostics status (expected_silence_s: the policy while its "
                                          "learner compiles for the first time); 0 = announcements ignored",
                                          low=0.0, high=86_400.0)
    stop_timeout_s: float = param(20.0, "SIGINT -> wait this long [s] -> SIGKILL", low=0.0,
                                  high=3600.0)
    log_tail_lines: int = param(20, "Lines of a crash-looping process's log in the final message",
                                low=0, high=10_000)
    warning_repeat_s: float = param(60.0, "A node warning on /diagnostics (level WARN: a bad-input or drop "
                                    "counter growing) is told on the console when it starts, again every "
                                    "this long while it goes on, and once it has been OK this long [s]",
                                    low=1.0, high=86_400.0)
    enclave_prefix: str = param("", "SROS2: when set, each process runs in the security enclave "
                                "<enclave_prefix>/<process name> (--ros-args --enclave); '' = rcl's "
                                "default enclave /")

    def validate(self) -> None:
        if self.enclave_prefix and (not self.enclave_prefix.startswith("/")
                                    or self.enclave_prefix.endswith("/")):
            raise ValueError(f"enclave_prefix {self.enclave_prefix!r}: an absolute enclave name, "
                             f"e.g. /carla_rl")

    def enclave(self, process: ProcessSpec) -> str:
        """The enclave of ``process`` ('' = none given: rcl's default)."""
        return f"{self.enclave_prefix}/{process.name}" if self.enclave_prefix else ""


def load_supervisor_config(config_dir: Path) -> SupervisorConfig:
    """The ``supervisor`` block of ``config_dir/graph.yaml`` (defaults for missing keys, or without
    the file: a config directory made before the block existed)."""
    from carla_rl.contract.config import load_section

    path = Path(config_dir) / GRAPH_CONFIG_FILE
    if not path.is_file():
        return SupervisorConfig()
    return load_section(path, SUPERVISOR_SECTION, SupervisorConfig)


class RestartWindow:
    """The restart budget of one process: crashes in a sliding window of ``window_s``.

    :meth:`crash` records a crash at ``now`` and returns the delay before the restart (exponential in
    the crashes still inside the window, capped at ``max_backoff_s``), or None once ``max_crashes``
    crashes fall inside the window: the process is crash-looping and the run must end. Crashes older
    than the window no longer count, so a long run survives rare crashes.
    """

    def __init__(self, max_crashes: int, window_s: float, backoff_s: float, max_backoff_s: float) -> None:
        self.max_crashes = max_crashes
        self.window_s = window_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.crashes: deque[float] = deque()

    @classmethod
    def from_config(cls, config: SupervisorConfig) -> "RestartWindow":
        return cls(config.max_crashes, config.restart_window_s, config.restart_backoff_s,
                   config.max_backoff_s)

    def in_window(self, now: float) -> int:
        while self.crashes and self.crashes[0] <= now - self.window_s:
            self.crashes.popleft()
        return len(self.crashes)

    def crash(self, now: float) -> float | None:
        self.crashes.append(now)
        count = self.in_window(now)
        if count >= self.max_crashes:
            return None
        return min(self.backoff_s * 2 ** (count - 1), self.max_backoff_s)


class NodeWarnings:
    """The WARN statuses of the graph's nodes, told to the user without flooding the console.

    :meth:`update` takes every /diagnostics status and returns a line to print, or None: when a node
    starts warning, again every ``repeat_s`` while it keeps warning (a counter growing now and then
    flips its status between WARN and OK: still one warning per ``repeat_s``), and once it has been
    OK for ``repeat_s`` after a warning.
    """

    def __init__(self, repeat_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.repeat_s = repeat_s
        self.clock = clock
        self.told_at: dict[str, float] = {}  # node fqn -> when its last warning line was given
        self.ok_since: dict[str, float] = {}  # node fqn (told a warning) -> OK since

    def update(self, fqn: str, warning: bool, message: str) -> str | None:
        now = self.clock()
        told = self.told_at.get(fqn)
        if warning:
            self.ok_since.pop(fqn, None)
            if told is None or now - told >= self.repeat_s:
                self.told_at[fqn] = now
                return f"warning: {fqn}: {message}" + (" (still)" if told is not None else "")
            return None
        if told is None:
            return None
        since = self.ok_since.setdefault(fqn, now)
        if now - since >= self.repeat_s:
            del self.told_at[fqn], self.ok_since[fqn]
            return f"{fqn}: no warning for {self.repeat_s:.0f} s"
        return None


def log_tail(path: Path | None, lines: int) -> str:
    """The last ``lines`` lines of a log file ('' if none)."""
    if path is None or lines <= 0:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * lines))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One process of the graph (a node, or a container of several) and its restart state."""

    spec: ProcessSpec
    window: RestartWindow
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    last_heartbeat: dict[str, float] = field(default_factory=dict)  # node fqn -> last heartbeat
    quiet_until: dict[str, float] = field(default_factory=dict)  # node fqn -> announced silence ends
    log_path: Path | None = None
    history: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said while (re)starting it, reported by poll()


def node_command(spec: NodeSpec | ProcessSpec, config_dir: Path, log_level: str, params_dir: Path,
                 enclave: str = "") -> list[str]:
    """The command of a process (a NodeSpec: the node alone); each node's parameter overrides go to a
    node-keyed params file in ``params_dir``; ``enclave``: the process's SROS2 enclave ('' = none)."""
    process = spec if isinstance(spec, ProcessSpec) else ProcessSpec(spec.name, spec.namespace,
                                                                     (replace(spec, container=""),))
    command = [sys.executable, "-m", f"carla_rl.nodes.{process.executable}_node",
               *process_arguments(process, config_dir, log_level, params_dir)]
    return command + ["--ros-args", "--enclave", enclave] if enclave else command


class Supervisor:
    def __init__(self, specs: list[NodeSpec], config_dir: Path, log_dir: Path, log_level: str = "info",
                 config: SupervisorConfig | None = None,
                 resume_checkpoint: Callable[[Callable[[str], None]], str] | None = None,
                 env: dict[str, str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or SupervisorConfig()
        self.clock = clock
        self.config_dir = Path(config_dir)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.resume_checkpoint = resume_checkpoint
        self.env = dict(os.environ if env is None else env)
        self.processes = {process.fqn: ManagedProcess(process, RestartWindow.from_config(self.config))
                          for process in group_processes(specs)}
        self.owner = {node.fqn: fqn for fqn, managed in self.processes.items() for node in managed.spec.components}
        self.failed: str | None = None

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for managed in self.processes.values():
            self._spawn(managed)

    def _spawn(self, managed: ManagedProcess) -> None:
        spec = managed.spec
        if managed.restarts and "policy" in spec.roles and self.resume_checkpoint is not None:
            checkpoint = self.resume_checkpoint(managed.notes.append)  # notes: checkpoints skipped
            if checkpoint:
                spec = replace(spec, components=tuple(
                    replace(c, parameters={**c.parameters, "load_model_from": checkpoint}) if c.role == "policy"
                    else c for c in spec.components))
                managed.notes.append(f"{spec.fqn}: resuming from {checkpoint}")
                managed.history.append(f"resuming from {checkpoint}")
        safe = spec.fqn.strip("/").replace("/", "__")
        managed.log_path = self.log_dir / f"{safe}.log"
        log = open(managed.log_path, "ab")
        managed.process = subprocess.Popen(node_command(spec, self.config_dir, self.log_level,
                                                        self.log_dir / "params", self.config.enclave(spec)),
                                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=self.env, preexec_fn=_die_with_parent)
        log.close()
        managed.started_at = self.clock()
        managed.last_heartbeat = {node.fqn: managed.started_at for node in spec.components}
        managed.quiet_until = {}

    def heartbeat(self, fqn: str, expected_silence_s: float = 0.0) -> None:
        """A node's /diagnostics status arrived (``fqn``: the node's name, also inside a container);
        ``expected_silence_s`` > 0: the node announced that it may be silent that long from now on
        (at most ``max_expected_silence_s``), which the liveness check then accepts."""
        managed = self.processes.get(self.owner.get(fqn, ""))
        if managed is not None and fqn in managed.last_heartbeat:
            now = self.clock()
            managed.last_heartbeat[fqn] = now
            quiet = min(expected_silence_s, self.config.max_expected_silence_s)
            if quiet > 0.0:
                managed.quiet_until[fqn] = now + quiet
            else:
                managed.quiet_until.pop(fqn, None)

    def silent(self, managed: ManagedProcess, now: float) -> str:
        """Why ``managed`` counts as hung ('' while alive): none of its nodes heard for
        ``heartbeat_timeout_s``, or one of them not for ``node_heartbeat_timeout_s``; a node not heard
        since the process started gets ``startup_timeout_s`` instead."""
        cfg = self.config
        # a node inside a silence it announced counts as heard now
        heard = {fqn: max(t, min(now, managed.quiet_until.get(fqn, 0.0)))
                 for fqn, t in managed.last_heartbeat.items() if t > managed.started_at}
        unheard = [fqn for fqn in managed.last_heartbeat if fqn not in heard]
        if unheard and now - managed.started_at > cfg.startup_timeout_s:
            return f"node {unheard[0]} not heard within {cfg.startup_timeout_s:.0f} s of its start"
        if heard and now - max(heard.values()) > cfg.heartbeat_timeout_s:
            return f"no heartbeat for {cfg.heartbeat_timeout_s:.0f} s"
        if heard:
            oldest = min(heard, key=heard.get)
            if now - heard[oldest] > cfg.node_heartbeat_timeout_s:
                return f"node {oldest} silent for {cfg.node_heartbeat_timeout_s:.0f} s"
        return ""

    def poll(self) -> list[str]:
        """Check every process once; restart the dead or hung. Returns what happened (for logging); a
        crash loop sets :attr:`failed` (one message) instead."""
        events = []
        now = self.clock()
        for fqn, managed in self.processes.items():
            if self.failed:
                break
            proc = managed.process
            if proc is None:
                if now >= managed.next_start:
                    self._spawn(managed)
                    events += managed.notes
                    managed.notes = []
                    events.append(f"{fqn}: restarted (#{managed.restarts})")
                continue
            code = proc.poll()
            hung = self.silent(managed, now) if code is None else ""
            if code is None and not hung:
                continue
            if code is None:  # hung: no heartbeat
                events.append(f"{fqn}: {hung}, killing")
                self._kill(proc)
                code = proc.wait()
            managed.process = None
            managed.restarts += 1
            reason = hung or f"exited with {code}"
            backoff = managed.window.crash(now)
            if backoff is None:
                self.failed = self._crash_loop_message(managed, reason)
                managed.next_start = float("inf")
                continue
            managed.next_start = now + backoff
            events.append(f"{fqn}: {reason}; restarting in {backoff:.1f} s")
        return events

    def _crash_loop_message(self, managed: ManagedProcess, reason: str) -> str:
        spec = managed.spec
        nodes = ", ".join(c.fqn for c in spec.components)
        what = spec.fqn if nodes == spec.fqn else f"{spec.fqn} (nodes {nodes})"
        message = (f"{what} crashed {len(managed.window.crashes)} times within "
                   f"{self.config.restart_window_s:.0f} s (last: {reason}); not restarted again. "
                   f"Log: {managed.log_path}")
        tail = log_tail(managed.log_path, self.config.log_tail_lines)
        return f"{message}; its last lines:\n{tail}" if tail else message

    def alive(self) -> dict[str, bool]:
        return {fqn: m.process is not None and m.process.poll() is None for fqn, m in self.processes.items()}

    def pids(self) -> list[int]:
        return [m.process.pid for m in self.processes.values() if m.process is not None]

    def stop(self) -> None:
        procs = [m.process for m in self.processes.values() if m.process is not None and m.process.poll() is None]
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.stop_timeout_s
        for proc in procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._kill(proc)
                proc.wait()
        for managed in self.processes.values():
            managed.process = None

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def latest_checkpoint(save_dir: Path, note: Callable[[str], None] | None = None) -> str:
    """The checkpoint a restarted policy resumes from ('' if none): among the checkpoints under
    ``save_dir/checkpoints`` that pass :func:`carla_rl.learner.checkpoint.verify_checkpoint`, the
    newest (by mtime) that holds a replay (periodic and final checkpoints), else the newest. Each
    newer one that fails is skipped with a line to ``note``."""
    from carla_rl.learner.checkpoint import CheckpointError, verify_checkpoint

    directory = Path(save_dir) / "checkpoints"
    if not directory.is_dir():
        return ""
    candidates = []
    for path in directory.glob("*.pt"):
        try:
            candidates.append((path.stat().st_mtime, path))
        except OSError:  # removed meanwhile (rotation)
            continue
    newest_valid = ""
    for _, path in sorted(candidates, reverse=True):
        try:
            has_replay = verify_checkpoint(path)
        except CheckpointError as exc:
            if note is not None:
                note(f"skipping checkpoint {path}: {exc}; trying the previous one")
            continue
        if has_replay:
            return str(path)
        newest_valid = newest_valid or str(path)
    return newest_valid
