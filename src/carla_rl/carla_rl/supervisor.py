"""Runs the graph's nodes as child processes and keeps them alive.

- Every process of the graph (:func:`carla_rl.graph.group_processes`: a node alone, ``python -m
  carla_rl.nodes.<exe>_node --ros-args ...``, or a component container hosting several) runs in its
  own process group, bound to die with the supervisor (PR_SET_PDEATHSIG).
- A process that exits, or from which no /diagnostics heartbeat of any of its nodes arrived for
  ``heartbeat_timeout_s``, is restarted with exponential backoff (a container with all its nodes);
  the policy comes back from the latest checkpoint in the save directory. A process is alive while any
  of its nodes is heard: a container runs its nodes on one executor, so a hung one silences them all,
  while on a loaded machine the watcher misses single nodes' heartbeats for long stretches (a busy
  container with 16 nodes, 24 envs on 2 cores: one node unheard for 30 s while the others were heard
  within 1-11 s), which must not kill a working container.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from carla_rl.graph import NodeSpec, ProcessSpec, group_processes, process_arguments

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    os.setpgrp()


@dataclass
class SupervisorConfig:
    restart_backoff_s: float = 1.0        # first restart delay; doubles per consecutive crash
    max_backoff_s: float = 30.0
    max_restarts: int = 20                # per node, then the run fails
    heartbeat_timeout_s: float = 30.0     # no /diagnostics from any node of a process for this long -> restart
    stop_timeout_s: float = 20.0          # SIGINT -> wait this long -> SIGKILL


@dataclass
class ManagedProcess:
    """One process of the graph (a node, or a container of several) and its restart state."""

    spec: ProcessSpec
    process: subprocess.Popen | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = 0.0
    last_heartbeat: dict[str, float] = field(default_factory=dict)  # node fqn -> last heartbeat
    log_path: Path | None = None
    history: list[str] = field(default_factory=list)


def node_command(spec: NodeSpec | ProcessSpec, config_dir: Path, log_level: str, params_dir: Path) -> list[str]:
    """The command of a process (a NodeSpec: the node alone); each node's parameter overrides go to a
    node-keyed params file in ``params_dir``."""
    process = spec if isinstance(spec, ProcessSpec) else ProcessSpec(spec.name, spec.namespace,
                                                                     (replace(spec, container=""),))
    return [sys.executable, "-m", f"carla_rl.nodes.{process.executable}_node",
            *process_arguments(process, config_dir, log_level, params_dir)]


class Supervisor:
    def __init__(self, specs: list[NodeSpec], config_dir: Path, log_dir: Path, log_level: str = "info",
                 config: SupervisorConfig | None = None,
                 resume_checkpoint: Callable[[], str] | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.config = config or SupervisorConfig()
        self.config_dir = Path(config_dir)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.log_level = log_level
        self.resume_checkpoint = resume_checkpoint
        self.env = dict(os.environ if env is None else env)
        self.processes = {process.fqn: ManagedProcess(process) for process in group_processes(specs)}
        self.owner = {node.fqn: fqn for fqn, managed in self.processes.items() for node in managed.spec.components}
        self.failed: str | None = None

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        for managed in self.processes.values():
            self._spawn(managed)

    def _spawn(self, managed: ManagedProcess) -> None:
        spec = managed.spec
        if managed.restarts and "policy" in spec.roles and self.resume_checkpoint is not None:
            checkpoint = self.resume_checkpoint()
            if checkpoint:
                spec = replace(spec, components=tuple(
                    replace(c, parameters={**c.parameters, "load_model_from": checkpoint}) if c.role == "policy"
                    else c for c in spec.components))
                managed.history.append(f"resuming from {checkpoint}")
        safe = spec.fqn.strip("/").replace("/", "__")
        managed.log_path = self.log_dir / f"{safe}.log"
        log = open(managed.log_path, "ab")
        managed.process = subprocess.Popen(node_command(spec, self.config_dir, self.log_level,
                                                        self.log_dir / "params"),
                                           stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                           env=self.env, preexec_fn=_die_with_parent)
        log.close()
        managed.started_at = time.monotonic()
        managed.last_heartbeat = {node.fqn: managed.started_at for node in spec.components}

    def heartbeat(self, fqn: str) -> None:
        """A node's /diagnostics status arrived (``fqn``: the node's name, also inside a container)."""
        managed = self.processes.get(self.owner.get(fqn, ""))
        if managed is not None and fqn in managed.last_heartbeat:
            managed.last_heartbeat[fqn] = time.monotonic()

    def poll(self) -> list[str]:
        """Check every node once; restart the dead or silent. Returns what happened (for logging)."""
        events = []
        now = time.monotonic()
        for fqn, managed in self.processes.items():
            proc = managed.process
            if proc is None:
                if now >= managed.next_start:
                    self._spawn(managed)
                    events.append(f"{fqn}: restarted (#{managed.restarts})")
                continue
            code = proc.poll()
            silent = now - max(managed.last_heartbeat.values()) > self.config.heartbeat_timeout_s
            if code is None and not silent:
                continue
            if code is None:  # hung: no heartbeat
                events.append(f"{fqn}: no heartbeat for {self.config.heartbeat_timeout_s:.0f} s, killing")
                self._kill(proc)
                code = proc.wait()
            managed.process = None
            managed.restarts += 1
            if managed.restarts > self.config.max_restarts:
                self.failed = f"{fqn} crashed {managed.restarts} times (log: {managed.log_path})"
                events.append(self.failed)
                continue
            backoff = min(self.config.restart_backoff_s * 2 ** (managed.restarts - 1), self.config.max_backoff_s)
            managed.next_start = now + backoff
            events.append(f"{fqn}: exited with {code}; restarting in {backoff:.1f} s")
        return events

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


def latest_checkpoint(save_dir: Path) -> str:
    """The newest complete checkpoint under ``save_dir/checkpoints`` ('' if none)."""
    directory = Path(save_dir) / "checkpoints"
    if not directory.is_dir():
        return ""
    candidates = sorted(directory.glob("*.pt"), key=lambda p: p.stat().st_mtime)
    return str(candidates[-1]) if candidates else ""
