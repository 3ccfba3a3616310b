"""hosts_probe: the learner host's eyes for ``carla-rl bench hosts`` (carla_rl.bench.hosts).

Run as ``python -m carla_rl.nodes.support.hosts_probe`` on the learner host. Prints one JSON line per
event on stdout:

- ``{"kind": "stats", "t": ..., "env_steps": ..., "updates": ...}`` per /carla_rl/training_stats
  (the policy's count of env steps it acted on; ``t`` is time.monotonic(), shared by every network
  namespace of the machine)
- ``{"kind": "first_observation", "env": i, "t": ...}`` the first <env_i>/observation after a
  ``watch i`` line on stdin; the subscription is then dropped, so that observations cross the network
  once (to the policy) while the bytes are counted.
- ``{"kind": "subscribed", "topic": T, "t": ...}`` once a node subscribes to topic T, after a
  ``subscribed T`` line (the policy is up: it subscribes to every env's observation).
- ``{"kind": "ready", "t": ...}`` once the probe is up.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time

import rclpy
import rclpy.executors
from rclpy.node import Node

from carla_rl.contract import topics
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl_interfaces.msg import Observation, TrainingStats

COMMAND_POLL_S = 0.02  # how often the executor takes the commands read from stdin


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class HostsProbe(Node):
    def __init__(self, commands: "queue.Queue[str]") -> None:
        super().__init__("carla_rl_hosts_probe")
        self.commands = commands
        self.watches: dict[int, object] = {}
        self.awaited: set[str] = set()  # topics whose first subscriber is awaited
        self.create_subscription(TrainingStats, topics.TRAINING_STATS, self.on_stats, qos.EVENTS)
        self.create_timer(COMMAND_POLL_S, self.take_commands)

    def on_stats(self, msg: TrainingStats) -> None:
        emit({"kind": "stats", "t": time.monotonic(), "env_steps": int(msg.env_steps), "updates": int(msg.updates)})

    def take_commands(self) -> None:
        for topic in [t for t in self.awaited if self.count_subscribers(t) > 0]:
            self.awaited.discard(topic)
            emit({"kind": "subscribed", "topic": topic, "t": time.monotonic()})
        while True:
            try:
                line = self.commands.get_nowait()
            except queue.Empty:
                return
            verb, _, arg = line.strip().partition(" ")
            if verb == "subscribed" and arg:
                self.awaited.add(arg)
            if verb == "watch" and arg.isdigit() and int(arg) not in self.watches:
                env_id = int(arg)
                self.watches[env_id] = self.create_subscription(
                    Observation, f"{topics.env_namespace(env_id)}/{topics.OBSERVATION}",
                    lambda _msg, e=env_id: self.on_first_observation(e), qos.SENSOR)

    def on_first_observation(self, env_id: int) -> None:
        subscription = self.watches.pop(env_id, None)
        if subscription is None:
            return
        emit({"kind": "first_observation", "env": env_id, "t": time.monotonic()})
        self.destroy_subscription(subscription)


def read_commands(commands: "queue.Queue[str]") -> None:
    for line in sys.stdin:
        commands.put(line)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    commands: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    node = HostsProbe(commands)
    emit({"kind": "ready", "t": time.monotonic()})
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
