"""The ``carla-rl`` CLI's own ROS nodes (progress monitor, live display, recorder, replay): rclpy's
context and one single-threaded executor. cli/commands.py reaches ROS only through here and through
service_calls.call_from_outside, so the CLI module itself imports no rclpy.
"""

from __future__ import annotations

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions


class CliRuntime:
    """rclpy initialised without its signal handlers (the CLI's own handlers end its loops cleanly) and an
    executor for the nodes added with :meth:`add`. As a context manager it destroys those nodes (last
    added first) and shuts rclpy down on exit."""

    def __init__(self) -> None:
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        self.executor = SingleThreadedExecutor()
        self.nodes: list = []

    def add(self, node):
        """Spin ``node`` in this executor; returns it."""
        self.executor.add_node(node)
        self.nodes.append(node)
        return node

    def spin_once(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        while self.nodes:
            self.nodes.pop().destroy_node()
        rclpy.try_shutdown()

    def __enter__(self) -> "CliRuntime":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
