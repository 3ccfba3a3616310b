"""The listener of ``carla-rl bench graph`` (driver: carla_rl.bench.graph): one node, outside the
graph, that reads /diagnostics (each simulator's counters and latency quantiles; every status is also a
heartbeat for the supervisor) and the policy's TrainingStats.
"""

from __future__ import annotations

from typing import Callable

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor

from carla_rl.nodes.support.diagnostics import DIAGNOSTICS_TOPIC, expected_silence_s
from carla_rl.nodes.support.qos_profiles import EVENTS
from carla_rl.contract.topics import TRAINING_STATS
from carla_rl_interfaces.msg import TrainingStats


class GraphListener:
    """``simulators``: the latest /diagnostics values of each node whose name ends in one of
    ``simulator_nodes`` (status name -> {key: value}); ``stats``: the TrainingStats messages received
    (the driver clears it when a window starts). rclpy is initialised here and shut down by :meth:`close`."""

    def __init__(self, simulator_nodes: tuple[str, ...], on_heartbeat: Callable[[str, float], None]) -> None:
        self.simulator_nodes = simulator_nodes
        self.on_heartbeat = on_heartbeat
        self.simulators: dict[str, dict[str, str]] = {}
        self.stats: list = []
        rclpy.init(args=[])
        self.node = rclpy.create_node("carla_rl_bench_graph")
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, 100)
        self.node.create_subscription(TrainingStats, TRAINING_STATS, self.stats.append, EVENTS)
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            self.on_heartbeat(status.name, expected_silence_s(status))
            if status.name.rsplit("/", 1)[-1] in self.simulator_nodes:
                self.simulators[status.name] = {kv.key: kv.value for kv in status.values}

    def spin_once(self, timeout_s: float) -> None:
        self.executor.spin_once(timeout_sec=timeout_s)

    def close(self) -> None:
        self.node.destroy_node()
        rclpy.try_shutdown()
