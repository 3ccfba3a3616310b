"""hosts_probe: the learner host's eyes for ``carla-rl bench hosts`` (carla_rl.bench.hosts).

Run as ``python -m carla_rl.nodes.support.hosts_probe`` on the learner host. Prints one JSON line per
event on stdout:

- ``{"kind": "stats", "t": ..., "env_steps": ..., "per_env": [...]}`` every COUNT_PERIOD_S: the env steps
  the policy acted on so far (its commands, <env_i>/vehicle_command of every env given by ``--envs``, heard
  on the learner host itself: nothing more crosses the network; the policy's own TrainingStats count stored
  transitions, which leave out the rest of an episode it first saw midway, as a joining env's); ``t`` is
  time.monotonic(), shared by every network namespace of the machine
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
from carla_rl_interfaces.msg import Observation, VehicleCommand

COMMAND_POLL_S = 0.02  # how often the executor takes the commands read from stdin
COUNT_PERIOD_S = 0.5   # how often the acted env steps are reported


def emit(record: dict) -> None:
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


class HostsProbe(Node):
    def __init__(self, commands: "queue.Queue[str]", num_envs: int) -> None:
        super().__init__("carla_rl_hosts_probe")
        self.commands = commands
        self.acted = [0] * num_envs
        for env_id in range(num_envs):
            self.create_subscription(VehicleCommand, f"{topics.env_namespace(env_id)}/{topics.VEHICLE_COMMAND}",
                                     lambda _msg, e=env_id: self.on_command(e), qos.SENSOR)
        self.create_timer(COUNT_PERIOD_S, self.report)
        self.watches: dict[int, object] = {}
        self.awaited: set[str] = set()  # topics whose first subscriber is awaited
        self.create_timer(COMMAND_POLL_S, self.take_commands)

    def on_command(self, env_id: int) -> None:
        self.acted[env_id] += 1

    def report(self) -> None:
        emit({"kind": "stats", "t": time.monotonic(), "env_steps": sum(self.acted), "per_env": list(self.acted)})

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
    import argparse

    parser = argparse.ArgumentParser(prog="hosts_probe")
    parser.add_argument("--envs", type=int, required=True, help="count the commands of envs 0..ENVS-1")
    options, ros_args = parser.parse_known_args(args)
    rclpy.init(args=ros_args)
    commands: queue.Queue[str] = queue.Queue()
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    node = HostsProbe(commands, options.envs)
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
