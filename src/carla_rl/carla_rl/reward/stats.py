"""Statistics of one finished episode (mirrors carla_rl_interfaces/EpisodeStats)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from carla_rl.reward.calculator import TERM_NAMES, StepRewardResult, TerminationReason
from carla_rl.contract.sensor_frame import EgoSituation, Odometry


@dataclass
class EpisodeStats:
    """One finished episode; field for field EpisodeStats.msg (without the header)."""

    env_id: int = 0
    episode_id: int = 0
    phase: int = 1
    evaluation: bool = False
    steps: int = 0
    total_reward: float = 0.0
    term_names: tuple[str, ...] = TERM_NAMES
    term_totals: tuple[float, ...] = (0.0,) * len(TERM_NAMES)
    termination_reason: str = ""
    goal_reached: bool = False
    collision: bool = False
    sidewalk: bool = False
    red_light_violation: bool = False
    distance_m: float = 0.0
    mean_speed_mps: float = 0.0

    def term_total(self, name: str) -> float:
        return self.term_totals[self.term_names.index(name)]


class EpisodeStatsAccumulator:
    """Sums the step results of one episode: :meth:`start`, :meth:`add` per tick, :meth:`finish`."""

    def __init__(self) -> None:
        self._env_id = 0
        self._episode_id = 0
        self._phase = 1
        self._evaluation = False
        self._clear()

    def _clear(self) -> None:
        self._steps = 0
        self._total_reward = 0.0
        self._term_totals = dict.fromkeys(TERM_NAMES, 0.0)
        self._reason = TerminationReason.NONE.value
        self._goal_reached = False
        self._collision = False
        self._sidewalk = False
        self._red_light = False
        self._distance_m = 0.0
        self._speed_sum = 0.0
        self._last_position: tuple[float, float] | None = None
        self._started = False

    @property
    def steps(self) -> int:
        return self._steps

    @property
    def started(self) -> bool:
        return self._started

    def start(self, env_id: int, episode_id: int, phase: int, evaluation: bool) -> None:
        self._clear()
        self._env_id, self._episode_id = env_id, episode_id
        self._phase, self._evaluation = phase, evaluation
        self._started = True

    def add(self, result: StepRewardResult, situation: EgoSituation, odometry: Odometry,
            speed: float) -> None:
        if not self._started:
            raise RuntimeError("EpisodeStatsAccumulator.add() before start()")
        self._steps += 1
        self._total_reward += result.reward
        for name, value in result.terms.items():
            self._term_totals[name] = self._term_totals.get(name, 0.0) + value
        if result.reason:
            self._reason = result.reason
        self._goal_reached |= result.reason == TerminationReason.GOAL_REACHED
        self._collision |= result.reason == TerminationReason.COLLISION
        self._sidewalk |= bool(situation.on_sidewalk)
        self._red_light |= bool(situation.ran_red_light)
        position = (odometry.x, odometry.y)
        if self._last_position is not None and all(map(math.isfinite, position)):
            self._distance_m += math.dist(self._last_position, position)
        self._last_position = position
        if math.isfinite(speed):
            self._speed_sum += abs(speed)

    def finish(self) -> EpisodeStats:
        """The episode's statistics; the accumulator must be started again before more adds."""
        names = tuple(self._term_totals)
        stats = EpisodeStats(
            env_id=self._env_id, episode_id=self._episode_id, phase=self._phase,
            evaluation=self._evaluation, steps=self._steps, total_reward=self._total_reward,
            term_names=names, term_totals=tuple(self._term_totals[n] for n in names),
            termination_reason=self._reason, goal_reached=self._goal_reached,
            collision=self._collision, sidewalk=self._sidewalk,
            red_light_violation=self._red_light, distance_m=self._distance_m,
            mean_speed_mps=self._speed_sum / self._steps if self._steps else 0.0)
        self._started = False
        return stats
