"""Helpers for tests that start real ROS 2 processes: wait on events with timeouts, never sleep
for luck, and leave no process behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "config"


def ros_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class NodeProcess:
    """A node (``python -m carla_rl.nodes.<exe>_node``) or any command in its own process group."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = Path(log_path)
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env or ros_env(), start_new_session=True)

    @classmethod
    def node(cls, executable: str, ros_args: list[str], log_dir: Path, overrides: dict | None = None,
             namespace: str = "", **env: str) -> "NodeProcess":
        """``overrides`` (dotted names) go into a node-keyed params file after ``ros_args``' own files,
        as the supervisor passes them (a plain ``-p`` loses to node-specific entries of a config file)."""
        from carla_rl.graph import NodeSpec, write_overrides_file

        argv = [sys.executable, "-m", f"carla_rl.nodes.{executable}_node", "--ros-args", *ros_args]
        if namespace:
            argv += ["-r", f"__ns:={namespace}"]
        if overrides:
            spec = NodeSpec(name=executable, executable=executable, namespace=namespace, parameters=overrides)
            argv += ["--params-file", str(write_overrides_file(spec, Path(log_dir) / "params"))]
        return cls(argv, Path(log_dir) / f"{executable}-{time.monotonic_ns()}.log", ros_env(**env))

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT, wait, SIGKILL if needed; returns the exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> "NodeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def spin_until(node, predicate: Callable[[], bool], timeout: float, executor=None) -> bool:
    """Spin ``node`` until ``predicate()`` holds or ``timeout`` seconds pass; returns predicate()."""
    import rclpy

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        if executor is not None:
            executor.spin_once(timeout_sec=0.05)
        else:
            rclpy.spin_once(node, timeout_sec=0.05)
    return True


def spin_composed_until(executor, buses, predicate: Callable[[], bool], timeout: float) -> bool:
    """:func:`spin_until` for nodes composed on intra-process buses (nodes/support/intra_process.py): every executor
    turn is followed by the process's due deadlines and a drain of each bus, as in the component container."""
    from carla_rl.nodes.support.deadlines import PROCESS_SCHEDULE

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=PROCESS_SCHEDULE.wait_timeout(0.02))
        PROCESS_SCHEDULE.run_due()
        for bus in buses:
            bus.drain()
    return True


def watch_diagnostics(node, node_fqn: str) -> dict[str, str]:
    """A dict kept up to date with the latest /diagnostics key/values of node ``node_fqn``."""
    from diagnostic_msgs.msg import DiagnosticArray

    counters: dict[str, str] = {}

    def on_diagnostics(msg) -> None:
        for status in msg.status:
            if status.name == node_fqn:
                counters.update({kv.key: kv.value for kv in status.values})

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    return counters


def wait_for_service(node, srv_type, name: str, timeout: float):
    client = node.create_client(srv_type, name)
    assert client.wait_for_service(timeout_sec=timeout), f"service {name} did not appear within {timeout} s"
    return client


def call(node, client, request, timeout: float):
    """Call an idempotent service, re-sending the request while DDS discovery loses the answer."""
    from carla_rl.nodes.support.service_calls import call_idempotent

    response = call_idempotent(node, client, request, timeout)
    assert response is not None, f"service {client.service_name} did not answer within {timeout} s"
    return response


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is not alive
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


class FakeClock:
    """A clock the test moves by hand (``clock.now += 1.0``), for code that takes ``clock=``."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
