"""Heartbeat + counters on /diagnostics (diagnostic_msgs/DiagnosticArray), one status per node.

The supervisor treats a node's status as its heartbeat; the counters (dropped samples by reason,
control timeouts, ...) are how bad input is reported instead of crashing.
"""

from __future__ import annotations

from collections import Counter

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from carla_rl.contract.topics import EXPECTED_SILENCE_KEY
from carla_rl.nodes.support.ros_parameters import set_timer_period

DIAGNOSTICS_TOPIC = "/diagnostics"
GROWING_PREFIX = "growing: "  # a WARN status's message: GROWING_PREFIX + the growing counters, ", "-separated


class DiagnosticsReporter:
    """Publishes the node's counters every ``period_s``; level WARN while any ``warn_on`` counter grows."""

    def __init__(self, node: Node, period_s: float, warn_on: tuple[str, ...] = (),
                 before_publish=None) -> None:
        self._node = node
        self._before_publish = before_publish
        self.counters: Counter[str] = Counter()
        self.values: dict[str, str] = {}
        self._warn_on = warn_on
        self._last_warn_totals = {k: 0 for k in warn_on}
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._timer = node.create_timer(period_s, self.publish)

    def set_period(self, period_s: float) -> None:
        set_timer_period(self._timer, period_s)

    def count(self, key: str, n: int = 1) -> None:
        self.counters[key] += n

    def publish(self) -> None:
        if self._before_publish is not None:
            self._before_publish()
        status = DiagnosticStatus()
        status.name = self._node.get_fully_qualified_name()
        status.hardware_id = "carla_rl"
        grew = [k for k in self._warn_on if self.counters[k] > self._last_warn_totals[k]]
        self._last_warn_totals = {k: self.counters[k] for k in self._warn_on}
        status.level = DiagnosticStatus.WARN if grew else DiagnosticStatus.OK
        status.message = (GROWING_PREFIX + ", ".join(grew)) if grew else "ok"
        status.values = [KeyValue(key=k, value=str(v)) for k, v in sorted(self.counters.items())]
        status.values += [KeyValue(key=k, value=v) for k, v in sorted(self.values.items())]
        msg = DiagnosticArray()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.status = [status]
        self._pub.publish(msg)


def expected_silence_s(status: DiagnosticStatus) -> float:
    """The silence [s] a status announces (``expected_silence_s``; 0 when absent or not a number)."""
    for value in status.values:
        if value.key == EXPECTED_SILENCE_KEY:
            try:
                seconds = float(value.value)
            except ValueError:
                return 0.0
            return seconds if seconds > 0.0 else 0.0   # NaN, negative: nothing announced
    return 0.0
