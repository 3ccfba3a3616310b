"""Helpers of the operations tests: diagnostics counters of a node, message builders."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray

from carla_rl.nodes.support import ros_conversions as conv
from carla_rl.nodes.support import qos_profiles as qos


class DiagnosticsCounters:
    """The latest /diagnostics key/values of one node (by fully qualified name)."""

    def __init__(self, node, fqn: str) -> None:
        self.fqn = fqn
        self.values: dict[str, str] = {}
        self.seen = False
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on, qos.EVENTS)

    def _on(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self.fqn:
                self.seen = True
                self.values = {kv.key: kv.value for kv in status.values}

    def count(self, key: str) -> int:
        try:
            return int(self.values.get(key, "0"))
        except ValueError:
            return 0


def stamp(seconds: float) -> Time:
    return conv.time_msg(seconds)


def solid_image(colour: tuple[int, int, int], size: int, t: float, frame_id: str = "map"):
    image = np.zeros((size, size, 3), np.uint8)
    image[:] = colour
    return conv.image_msg(image, stamp(t), frame_id)
