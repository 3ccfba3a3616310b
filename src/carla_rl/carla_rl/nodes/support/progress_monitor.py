"""An in-process rclpy node for the CLI: progress bar, heartbeats for the supervisor, final summary.

Not an executable of the graph: ``carla-rl train`` runs it beside the supervised node processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.node import Node

from carla_rl.contract import topics
from carla_rl.nodes.support import qos_profiles as qos
from carla_rl.nodes.support.diagnostics import DIAGNOSTICS_TOPIC, GROWING_PREFIX, expected_silence_s
from carla_rl_interfaces.msg import CurriculumStatus, EpisodeStats, EvaluationResult, TrainingStats


@dataclass
class ProgressState:
    training_episodes: int = 0
    evaluation_episodes: int = 0
    phase: int = 0
    phase_name: str = ""
    finished: bool = False
    paused: bool = False
    env_steps_per_s: float = 0.0
    updates_per_s: float = 0.0
    loss: float = float("nan")
    replay_size: int = 0
    last_reward: float = 0.0
    last_reason: str = ""
    evaluations: list = field(default_factory=list)


class ProgressMonitor(Node):
    def __init__(self, on_heartbeat: Callable[[str, float], None] | None = None,
                 on_change: Callable[[ProgressState], None] | None = None,
                 on_status: Callable[[str, bool, str], None] | None = None) -> None:
        """``on_heartbeat(node, expected_silence_s)`` and ``on_status(node, warning, message)``: each
        node's /diagnostics status."""
        super().__init__("carla_rl_cli")
        self.state = ProgressState()
        self._on_heartbeat = on_heartbeat
        self._on_status = on_status
        self._on_change = on_change
        self.create_subscription(CurriculumStatus, topics.CURRICULUM_STATUS, self._status, qos.LATCHED)
        self.create_subscription(EpisodeStats, topics.EPISODE_STATS, self._episode, qos.EVENTS)
        self.create_subscription(TrainingStats, topics.TRAINING_STATS, self._training, qos.EVENTS)
        self.create_subscription(EvaluationResult, topics.EVALUATION_RESULT, self._evaluation, qos.EVENTS)
        self.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._diagnostics, qos.EVENTS)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.state)

    def _status(self, msg: CurriculumStatus) -> None:
        self.state.phase, self.state.phase_name = msg.phase, msg.phase_name
        self.state.finished, self.state.paused = msg.finished, msg.paused
        self._changed()

    def _episode(self, msg: EpisodeStats) -> None:
        if msg.evaluation:
            self.state.evaluation_episodes += 1
        else:
            self.state.training_episodes += 1
        self.state.last_reward, self.state.last_reason = msg.total_reward, msg.termination_reason
        self._changed()

    def _training(self, msg: TrainingStats) -> None:
        self.state.env_steps_per_s, self.state.updates_per_s = msg.env_steps_per_s, msg.updates_per_s
        self.state.loss, self.state.replay_size = msg.loss, msg.replay_size
        self._changed()

    def _evaluation(self, msg: EvaluationResult) -> None:
        self.state.evaluations.append((msg.phase, msg.goal_rate, msg.collision_free_rate,
                                       msg.sidewalk_free_rate, msg.passed))
        self._changed()

    def _diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if self._on_heartbeat is not None:
                self._on_heartbeat(status.name, expected_silence_s(status))
            if self._on_status is not None:
                warning = status.level != DiagnosticStatus.OK
                self._on_status(status.name, warning, status_message(status) if warning else status.message)


def status_message(status: DiagnosticStatus) -> str:
    """A status's message with the values of the counters it names ("growing: dropped_ticks" ->
    "growing: dropped_ticks (dropped_ticks=12)")."""
    if not status.message.startswith(GROWING_PREFIX):
        return status.message
    values = {kv.key: kv.value for kv in status.values}
    names = status.message[len(GROWING_PREFIX):].split(", ")
    named = [f"{name}={values[name]}" for name in names if name in values]
    return f"{status.message} ({', '.join(named)})" if named else status.message
