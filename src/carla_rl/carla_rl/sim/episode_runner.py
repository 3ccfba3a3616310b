"""Run episodes of a policy in a :class:`World` with the evaluation rules of the curriculum.

An episode ends on a collision, on a sidewalk, at the goal or after ``max_steps`` ticks (the reward
core's collision, sidewalk and goal endings, without its off-road and stuck ones; the world itself
never ends an episode).
This is the autopilot check's loop (``python -m carla_rl.sim.autopilot_eval``, tests/sim): the World
alone, sensors optional, so it measures the scenarios themselves. Episodes scored by the reward core
(``carla-rl eval``, the trainers) step :class:`carla_rl.sim.episode.DrivingEpisode` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from carla_rl.contract.sensor_frame import SensorFrame, VehicleControl
from carla_rl.sim.world import World

Policy = Callable[[SensorFrame], "VehicleControl | int"]


@dataclass
class EpisodeOutcome:
    goal: bool
    collision: bool
    sidewalk: bool
    steps: int
    distance_m: float
    ran_red_lights: int = 0
    lane_invasions: int = 0

    @property
    def timeout(self) -> bool:
        return not (self.goal or self.collision or self.sidewalk)


def run_episode(
    world: World,
    policy_fn: Policy,
    max_steps: int,
    seed: int | None = None,
    first_frame: SensorFrame | None = None,
) -> EpisodeOutcome:
    """Reset (unless ``first_frame`` is given) and run until a termination or ``max_steps``.

    ``policy_fn(frame)`` returns a VehicleControl or a discrete action index.
    """
    frame = first_frame if first_frame is not None else world.reset(seed=seed)
    dt = world.dt
    distance = 0.0
    reds = invasions = 0
    for step in range(1, max_steps + 1):
        action = policy_fn(frame)
        if isinstance(action, VehicleControl):
            frame = world.step(action)
        else:
            frame = world.apply_action(int(action))
        distance += frame.speed * dt
        sit = frame.situation
        reds += int(sit.ran_red_light)
        invasions += sit.lane_invasion_events
        collision = sit.collision_events > 0
        if collision or sit.on_sidewalk or sit.goal_reached:
            return EpisodeOutcome(
                bool(sit.goal_reached and not collision),
                collision,
                sit.on_sidewalk,
                step,
                distance,
                reds,
                invasions,
            )
    return EpisodeOutcome(False, False, False, max_steps, distance, reds, invasions)


class RandomPolicy:
    """Uniformly random discrete actions among ``allowed`` (empty = all 6)."""

    def __init__(self, allowed: Sequence[int], seed: int = 0, num_actions: int = 6):
        self.allowed = np.array(list(allowed) or list(range(num_actions)))
        self.rng = np.random.default_rng(seed)

    def __call__(self, frame: SensorFrame) -> int:
        return int(self.allowed[self.rng.integers(len(self.allowed))])


@dataclass
class Rates:
    goal_rate: float
    collision_free_rate: float
    sidewalk_free_rate: float
    episodes: int
    mean_steps: float

    def passes(
        self, goal: float = 0.6, collision_free: float = 0.8, sidewalk_free: float = 0.9
    ) -> bool:
        return (
            self.goal_rate >= goal
            and self.collision_free_rate >= collision_free
            and self.sidewalk_free_rate >= sidewalk_free
        )


def evaluate(
    world: World, make_policy: Callable[[World, int], Policy], seeds: Sequence[int], max_steps: int
) -> tuple[Rates, list[EpisodeOutcome]]:
    """Run one episode per seed; ``make_policy(world, seed)`` builds the policy of that episode."""
    outcomes = []
    for seed in seeds:
        frame = world.reset(seed=seed)
        outcomes.append(run_episode(world, make_policy(world, seed), max_steps, first_frame=frame))
    n = len(outcomes)
    rates = Rates(
        sum(o.goal for o in outcomes) / n,
        sum(not o.collision for o in outcomes) / n,
        sum(not o.sidewalk for o in outcomes) / n,
        n,
        sum(o.steps for o in outcomes) / n,
    )
    return rates, outcomes
