"""mcap_replay: republish an MCAP recording (ROS 2 CDR) on its recorded topics, for rviz2 users.

Each message goes out on its recorded topic with its recorded type (``pkg/msg/Type`` resolved with
importlib), as the raw CDR bytes (no deserialization), paced by log time / ``rate`` (0 = as fast as
possible). Topics recorded as latched are republished transient-local, the others reliable.
``carla-rl replay FILE --rate X [--loop]`` runs this node in-process.

    ros2 run carla_rl mcap_replay --ros-args -p file:=run/recordings/env_0_episode_000003.mcap -p rate:=1.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from carla_rl.contract.config import ConfigError, param
from carla_rl.nodes.support import mcap_io
from carla_rl.nodes.support.node_runner import run_node
from carla_rl.nodes.support.ros_parameters import declare_config

REPLAY_RELIABLE = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=16, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.VOLATILE)
REPLAY_LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)


@dataclass(frozen=True)
class ReplayConfig:
    file: str = param("", "The .mcap file to replay", read_only=True)
    rate: float = param(1.0, "Playback speed: 1 = recorded speed, 0 = as fast as possible", low=0.0, high=1000.0)
    loop: bool = param(False, "Start again at the end")
    timer_period_s: float = param(0.005, "Pacing resolution", low=0.0005, high=1.0)
    burst: int = param(200, "At most this many messages per timer tick", low=1, high=100000)
    exit_when_done: bool = param(True, "Shut the node down after the last message (unless loop)")
    start_delay_s: float = param(0.5, "Wait this long after creating the publishers (discovery)", low=0.0,
                                 high=60.0)
    linger_s: float = param(1.0, "With exit_when_done: stay this long after the last message so that "
                            "reliable subscribers get it", low=0.0, high=60.0)


class McapReplayNode(Node):
    def __init__(self, **parameter_overrides) -> None:
        from rclpy.parameter import Parameter

        overrides = [Parameter(k, value=v) for k, v in parameter_overrides.items()]
        super().__init__("mcap_replay", parameter_overrides=overrides)
        self.cfg = declare_config(self, ReplayConfig)
        if not self.cfg.file:
            raise ConfigError("parameter 'file' is empty: which .mcap file to replay?")
        try:
            self.player = mcap_io.McapPlayer(self.cfg.file)
            self.publishers_by_topic = {}
            for topic in self.player.topics.values():
                msg_class = mcap_io.message_class(topic.type_name)
                profile = REPLAY_LATCHED if topic.qos == "latched" else REPLAY_RELIABLE
                self.publishers_by_topic[topic.name] = self.create_publisher(msg_class, topic.name, profile)
        except mcap_io.McapIoError as exc:
            raise ConfigError(str(exc)) from None
        self.clock = mcap_io.PlaybackClock(self.cfg.rate)
        self.published = 0
        self.loops = 0
        self.finished = False
        self.error = ""
        self._messages: Iterator[mcap_io.PlayedMessage] | None = None
        self._next: mcap_io.PlayedMessage | None = None
        self._start_at = self.get_clock().now().nanoseconds + int(self.cfg.start_delay_s * 1e9)
        self.timer = self.create_timer(self.cfg.timer_period_s, self.on_timer)
        self.get_logger().info(f"replaying {self.cfg.file}: {self.player.message_count} messages on "
                               f"{len(self.player.topics)} topics, {self.player.duration_s:.1f} s, rate "
                               f"{self.cfg.rate:g}{', looping' if self.cfg.loop else ''}")

    def on_timer(self) -> None:
        if self.finished or self.get_clock().now().nanoseconds < self._start_at:
            return
        try:
            for _ in range(self.cfg.burst):
                if self._next is None:
                    self._next = self._advance()
                    if self._next is None:
                        return
                if self.clock.due_in(self._next.log_time_ns) > 0:
                    return
                self.publishers_by_topic[self._next.topic].publish(self._next.data)
                self.published += 1
                self._next = None
        except mcap_io.McapIoError as exc:
            self.error = str(exc)
            self.get_logger().error(self.error)
            self._finish()

    def _advance(self) -> mcap_io.PlayedMessage | None:
        if self._messages is None:
            self._messages = self.player.messages()
        message = next(self._messages, None)
        if message is None:
            if self.cfg.loop and self.published:
                self.loops += 1
                self._messages = self.player.messages()
                self.clock.restart()
                return next(self._messages, None)
            self._finish()
        return message

    def _finish(self) -> None:
        self.finished = True
        self.timer.cancel()
        self.get_logger().info(f"replay finished: {self.published} messages published")
        if self.cfg.exit_when_done:
            self._exit_timer = self.create_timer(max(self.cfg.linger_s, 1e-3), self._exit)

    def _exit(self) -> None:
        self._exit_timer.cancel()
        self.context.try_shutdown()


def main(args: list[str] | None = None) -> int:
    return run_node(McapReplayNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
