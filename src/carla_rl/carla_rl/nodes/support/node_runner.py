"""``main()`` for every node: init, build, spin, clean shutdown (the ros2/demos pattern).

A node whose background work died (the policy's learner thread) calls :func:`fail_process`: the spin
loop ends as on a stop signal, every node's ``on_shutdown`` runs, the reason goes to stderr and the
process exits with :data:`NODE_FAILURE_EXIT_CODE`, so the supervisor restarts it instead of keeping a
process that heartbeats but no longer works.
"""

from __future__ import annotations

import cProfile
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from rclpy.node import Node

from carla_rl.contract.allocator import tune_allocator
from carla_rl.contract.config import ConfigError
from carla_rl.nodes.support.deadlines import PROCESS_SCHEDULE

PROFILE_DIR_ENV = "CARLA_RL_PROFILE_DIR"
EXECUTOR_ENV = "CARLA_RL_EXECUTOR"  # "events" (default): rclpy's C++ EventsExecutor; "single": the Python one
STOP_POLL_S = 0.25  # longest a stop signal waits when rclpy's wake-up was missed
NODE_FAILURE_EXIT_CODE = 70  # EX_SOFTWARE (sysexits.h): a node of the process reported that it cannot go on


class ProcessStop:
    """How a node process's spin loop is asked to end: a stop signal (:meth:`request`) or a node that
    cannot go on (:meth:`fail`, from any thread); one per process, as its signal handlers are."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.failures: list[str] = []
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.event.clear()
            self.failures.clear()

    def request(self) -> None:
        self.event.set()

    def fail(self, reason: str) -> None:
        with self._lock:
            self.failures.append(reason)
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


PROCESS_STOP = ProcessStop()


def fail_process(reason: str) -> None:
    """End this node process with :data:`NODE_FAILURE_EXIT_CODE` after its nodes' ``on_shutdown``;
    ``reason`` (exception and traceback) is printed to stderr. Safe from any thread; the spin loop sees
    it within ``STOP_POLL_S``."""
    PROCESS_STOP.fail(reason)


def make_executor(threads: int = 1):
    """The executor of a node process. rclpy's EventsExecutor dispatches callbacks from C++ and costs
    a fraction of the Python SingleThreadedExecutor's per-callback overhead, which dominates a graph
    that exchanges ~15 messages per simulation tick (docs/BENCHMARKS.md, training graph)."""
    if threads > 1:
        return MultiThreadedExecutor(threads)
    choice = os.environ.get(EXECUTOR_ENV, "events")
    if choice == "events":
        from rclpy.experimental import EventsExecutor

        return EventsExecutor()
    if choice != "single":
        raise ConfigError(f"{EXECUTOR_ENV}={choice!r}: expected 'events' or 'single'")
    return SingleThreadedExecutor()


def freeze_heap() -> None:
    """Move everything built so far (modules, node state, torch modules) out of the cyclic GC's reach:
    later collections scan only new objects, so they stay short inside the lockstep tick."""
    gc.collect()
    gc.freeze()


def run_node(make_node: Callable[[], Node], args: list[str] | None = None, threads: int = 1) -> int:
    """Spin the node built by ``make_node`` until shutdown; returns the process exit code."""
    return run_nodes(lambda: [make_node()], args, threads)


def run_nodes(make_nodes: Callable[[], list[Node]], args: list[str] | None = None, threads: int = 1,
              after_turn: Callable[[], bool] | None = None) -> int:
    """Spin the nodes built by ``make_nodes`` in one executor until shutdown. After every executor turn
    the loop runs the process's due deadlines (:mod:`carla_rl.nodes.support.deadlines`; a turn waits for events
    no longer than the next one), then ``after_turn``: the component container drains its intra-process
    queue there; while it returns True, more work is queued and the next turn does not wait for events."""
    tune_allocator()  # per-tick buffers of a few 100 KB stay in the heap (carla_rl.contract.allocator)
    rclpy.init(args=args)
    # Python's default SIGINT handler raises KeyboardInterrupt at whatever bytecode runs next; inside a
    # message conversion pybind11 turns that into a RuntimeError that kills the node before its
    # on_shutdown (final checkpoint, clean exit code). So a stop signal only sets a flag: rclpy's own
    # handler has already woken the executor, and the spin loop below ends at its next turn.
    stop_requested = PROCESS_STOP
    stop_requested.reset()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop_requested.request())
    nodes: list[Node] = []
    profile_dir = os.environ.get(PROFILE_DIR_ENV)  # set by `carla-rl train --enable-profiler`
    profiler = cProfile.Profile() if profile_dir else None
    try:
        executor = make_executor(threads)
        nodes = make_nodes()
        for node in nodes:
            executor.add_node(node)
        more = after_turn() if after_turn is not None else False  # what the nodes queued while built
        freeze_heap()
        if profiler is not None:
            profiler.enable()
        while rclpy.ok() and not stop_requested.is_set():
            executor.spin_once(timeout_sec=0.0 if more else PROCESS_SCHEDULE.wait_timeout(STOP_POLL_S))
            PROCESS_SCHEDULE.run_due()
            if after_turn is not None:
                more = after_turn()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    finally:
        if profiler is not None:
            profiler.disable()
            if nodes:
                Path(profile_dir).mkdir(parents=True, exist_ok=True)
                name = nodes[0].get_fully_qualified_name().strip("/").replace("/", "__")
                if len(nodes) > 1:
                    name += "__container"  # one profile for the process: every hosted node's callbacks
                profiler.dump_stats(str(Path(profile_dir) / f"{name}.prof"))
        for node in nodes:
            shutdown = getattr(node, "on_shutdown", None)
            if callable(shutdown):
                shutdown()
            node.destroy_node()
        rclpy.try_shutdown()
    if stop_requested.failures:
        for reason in stop_requested.failures:
            print(f"fatal: {reason}", file=sys.stderr, flush=True)
        return NODE_FAILURE_EXIT_CODE
    return 0
