"""Evaluation metrics: finished evaluation episodes of one phase -> EvaluationResult."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Iterable, Mapping

from carla_rl.reward.stats import EpisodeStats
from carla_rl.contract.scenario import PhaseThresholds

# Absorbs float rounding of k / n against a threshold written as a decimal.
RATE_TOLERANCE = 1e-9


@dataclass
class EvaluationResult:
    """Mirror of carla_rl_interfaces/EvaluationResult (``stamp_s`` = stamp in seconds)."""

    phase: int = 0
    episodes: int = 0
    goal_rate: float = 0.0
    collision_free_rate: float = 0.0
    sidewalk_free_rate: float = 0.0
    mean_reward: float = 0.0
    passed: bool = False
    stamp_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "EvaluationResult":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"EvaluationResult: unknown key(s) {unknown}")
        return cls(**{k: data[k] for k in data})


def meets_thresholds(goal_rate: float, collision_free_rate: float, sidewalk_free_rate: float,
                     thresholds: PhaseThresholds) -> bool:
    return (goal_rate + RATE_TOLERANCE >= thresholds.goal_rate
            and collision_free_rate + RATE_TOLERANCE >= thresholds.collision_free_rate
            and sidewalk_free_rate + RATE_TOLERANCE >= thresholds.sidewalk_free_rate)


class EvaluationAggregator:
    """Collects the evaluation episodes of one phase until ``episodes_required`` have finished."""

    def __init__(self, phase: int, thresholds: PhaseThresholds, episodes_required: int) -> None:
        if episodes_required < 1:
            raise ValueError("episodes_required must be at least 1")
        self.phase = phase
        self.thresholds = thresholds
        self.episodes_required = episodes_required
        self._episodes: list[EpisodeStats] = []
        self.rejected = 0          # stats of training episodes or of another phase

    @property
    def episodes(self) -> int:
        return len(self._episodes)

    @property
    def complete(self) -> bool:
        return len(self._episodes) >= self.episodes_required

    def add(self, stats: EpisodeStats) -> bool:
        """Count an evaluation episode of this phase; others (and extras) are rejected -> False."""
        if not stats.evaluation or stats.phase != self.phase or self.complete:
            self.rejected += 1
            return False
        self._episodes.append(stats)
        return True

    def result(self, stamp_s: float = 0.0) -> EvaluationResult:
        """Rates over the episodes so far (``passed`` needs all ``episodes_required`` of them)."""
        count = len(self._episodes)
        if count == 0:
            return EvaluationResult(phase=self.phase, stamp_s=stamp_s)
        goal_rate = sum(s.goal_reached for s in self._episodes) / count
        collision_free = sum(not s.collision for s in self._episodes) / count
        sidewalk_free = sum(not s.sidewalk for s in self._episodes) / count
        mean_reward = sum(s.total_reward for s in self._episodes) / count
        passed = self.complete and meets_thresholds(goal_rate, collision_free, sidewalk_free,
                                                    self.thresholds)
        return EvaluationResult(phase=self.phase, episodes=count, goal_rate=goal_rate,
                                collision_free_rate=collision_free,
                                sidewalk_free_rate=sidewalk_free, mean_reward=mean_reward,
                                passed=passed, stamp_s=stamp_s)


class EnvShare:
    """The envs one reward evaluator serves, out of the graph's ``num_envs`` (namespaces /env_0 ...).

    One evaluator may serve every env (``env_ids`` empty), or several evaluators each a disjoint
    share (one per process, so that each process closes its own envs' lockstep chain). One of them
    leads the evaluations: it counts the evaluation episodes of its own envs as it finishes them and
    the others' from their published episode statistics (:meth:`is_remote`; its own come back on
    that topic too and were already counted). ``own=False``: no env of its own (the lead evaluator on a
    learner host, whose envs are all scored by the evaluators of worker hosts).
    """

    def __init__(self, env_ids: Iterable[int], num_envs: int, own: bool = True) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        ids = [int(i) for i in env_ids]
        outside = sorted({i for i in ids if not 0 <= i < num_envs})
        if outside:
            raise ValueError(f"env_ids {outside} outside 0..{num_envs - 1} (num_envs {num_envs})")
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"env_ids {repeated} listed more than once")
        if ids and not own:
            raise ValueError(f"env_ids {ids} given to an evaluator that scores no env of its own")
        self.num_envs = num_envs
        self.env_ids: tuple[int, ...] = (tuple(sorted(ids)) if ids else tuple(range(num_envs))) if own else ()
        self._served = frozenset(self.env_ids)

    @property
    def covers_all(self) -> bool:
        return len(self.env_ids) == self.num_envs

    def serves(self, env_id: int) -> bool:
        return env_id in self._served

    def is_remote(self, env_id: int) -> bool:
        """An env of the graph that another evaluator serves."""
        return 0 <= env_id < self.num_envs and env_id not in self._served
