"""Per-tick reward as named, weighted terms plus the termination / truncation decision.

Every term is ``weight x quantity`` of one cause (an event, a flag of EgoSituation, a measured
quantity), so a term can always be traced back; ``reward == sum(terms.values())``. Termination
(terminal state, no bootstrapping) and truncation (time limit / stuck: bootstrap) are separate.

The goal_pose term is potential-based shaping (Ng, Harada and Russell, 1999):
``F = gamma * Phi(s') - Phi(s)`` with the learner's gamma and ``Phi = 0`` once the episode has
terminated, so over an episode it sums (discounted) to ``gamma^T Phi(s_T) - Phi(s_0)`` and leaves
the optimal policy unchanged. After a truncation (time limit, stuck) ``s'`` is not terminal: the
learner bootstraps from it, and ``Phi(s')`` counts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from carla_rl.reward.config import RewardConfig
from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.sensor_frame import (CollisionEvent, EgoSituation, LaneInvasionEvent, Odometry,
                                   TrafficLightState)


class TerminationReason(StrEnum):
    """StepReward.termination_reason values ('' while the episode runs)."""

    NONE = ""
    COLLISION = "collision"
    SIDEWALK = "sidewalk"
    OFF_ROAD = "off_road"
    GOAL_REACHED = "goal_reached"
    TIMEOUT = "timeout"
    STUCK = "stuck"


TERMINAL_REASONS = (TerminationReason.COLLISION, TerminationReason.SIDEWALK,
                    TerminationReason.OFF_ROAD, TerminationReason.GOAL_REACHED)
TRUNCATION_REASONS = (TerminationReason.TIMEOUT, TerminationReason.STUCK)

# Fixed order of StepReward.term_names / EpisodeStats.term_names.
TERM_NAMES = (
    "collision",        # collision_penalty if any collision event (above the impulse floor)
    "sidewalk",         # sidewalk_penalty if situation.on_sidewalk
    "off_road",         # off_road_penalty if situation.off_road
    "goal",             # goal_reward if situation.goal_reached
    "progress",         # progress_reward_per_m x route progress of this tick [m]
    "target_speed",     # target_speed_reward x closeness of forward speed to the target (0 at rest, reversing)
    "overspeed",        # overspeed_penalty_per_mps x m/s above target + margin
    "proximity",        # proximity_penalty if nearest actor < proximity_threshold_m
    "traffic_light",    # traffic_light_compliance_reward once per light obeyed
    "red_light",        # red_light_penalty if situation.ran_red_light
    "lane_invasion",    # lane_invasion_penalty x penalised markings crossed
    "lateral_offset",   # lateral_offset_penalty_per_m x |offset| beyond the deadband
    "idle",             # idle_penalty per tick stopped, not at a red light, nobody within reach
    "stuck",            # stuck_penalty on the tick truncated as stuck
    "goal_pose",        # shaping_gamma x Phi(s') - Phi(s), Phi from the goal distance and heading
)

_WAITING_STATES = (TrafficLightState.RED, TrafficLightState.YELLOW)


@dataclass
class StepRewardResult:
    """Reward of one tick (mirrors StepReward: term_names/term_values = terms' keys/values)."""

    reward: float
    terms: dict[str, float]
    terminated: bool = False
    truncated: bool = False
    reason: str = TerminationReason.NONE.value

    @property
    def done(self) -> bool:
        return self.terminated or self.truncated


@dataclass
class _LightTracker:
    """Traffic light of the current approach: last distance/state and whether it was rewarded."""

    distance_m: float = math.inf
    state: int = TrafficLightState.UNKNOWN
    settled: bool = False          # compliance rewarded or red light run: nothing more to give


@dataclass
class _EpisodeState:
    scenario: ScenarioConfig
    previous_progress_m: float | None = None
    best_progress_m: float = -math.inf
    best_goal_distance_m: float = math.inf
    shaping: bool | None = None        # goal-pose shaping in this episode (None: not known yet)
    potential: float | None = None     # Phi of the last state (None: no state seen yet)
    ticks_without_progress: int = 0
    light: _LightTracker = field(default_factory=_LightTracker)
    ended: bool = False


class RewardCalculator:
    """Stateful per-episode reward: call :meth:`reset` with the episode's scenario, then
    :meth:`step` once per tick until the result is terminated or truncated."""

    def __init__(self, config: RewardConfig) -> None:
        self.config = config
        self._penalised_markings = frozenset(config.penalised_markings)
        self._episode: _EpisodeState | None = None

    @property
    def term_names(self) -> tuple[str, ...]:
        return TERM_NAMES

    @property
    def ticks_without_progress(self) -> int:
        return self._episode.ticks_without_progress if self._episode else 0

    def reset(self, scenario: ScenarioConfig, situation: EgoSituation | None = None) -> None:
        """Start an episode of ``scenario``. ``situation``: that of the episode's first state
        (the reset tick), the starting point of the goal-pose potential; without it the shaping
        starts from the first stepped tick (it stays potential-based, one tick shorter)."""
        self._episode = _EpisodeState(scenario=scenario)
        if situation is not None:
            self._start_potential(situation)

    def potential(self, situation: EgoSituation) -> float:
        """Phi(s) of the goal-pose shaping, <= 0 and 0 at the goal (0 where the distance is
        unknown); the phase switch is not applied here."""
        cfg = self.config
        distance = situation.goal_distance_m
        if not math.isfinite(distance):
            return 0.0
        value = cfg.goal_distance_potential_per_m * distance
        heading = situation.goal_heading_error_rad
        if math.isfinite(heading):
            fade = max(0.0, 1.0 - distance / cfg.goal_heading_radius_m)
            value += cfg.goal_heading_potential_per_rad * abs(heading) * fade
        return -value

    def step(self, situation: EgoSituation, odometry: Odometry, speed: float,
             collisions: list[CollisionEvent],
             lane_invasions: list[LaneInvasionEvent]) -> StepRewardResult:
        episode = self._episode
        if episode is None:
            raise RuntimeError("RewardCalculator.step() before reset(scenario)")
        if episode.ended:
            raise RuntimeError("the episode already ended; call reset(scenario) first")
        cfg = self.config
        speed = abs(speed)
        terms = dict.fromkeys(TERM_NAMES, 0.0)

        collided = any(self._counts_as_collision(event) for event in collisions)
        if collided:
            terms["collision"] = cfg.collision_penalty
        if situation.on_sidewalk:
            terms["sidewalk"] = cfg.sidewalk_penalty
        if situation.off_road:
            terms["off_road"] = cfg.off_road_penalty
        if situation.goal_reached:
            terms["goal"] = cfg.goal_reward

        terms["progress"] = cfg.progress_reward_per_m * self._progress_delta(situation)
        target = episode.scenario.target_speed_mps
        # moving forward only (odometry.vx, body frame, < 0 when reversing): reversing at the target speed
        # earns nothing, else backing and filling in place pays as much as driving the route
        forward_speed = speed if odometry.vx >= 0.0 else 0.0
        terms["target_speed"] = cfg.target_speed_reward * self._speed_closeness(forward_speed, target)
        overspeed = max(0.0, speed - target - cfg.overspeed_margin_mps)
        terms["overspeed"] = cfg.overspeed_penalty_per_mps * overspeed
        if situation.nearest_actor_distance_m < cfg.proximity_threshold_m:
            terms["proximity"] = cfg.proximity_penalty

        if situation.ran_red_light:
            terms["red_light"] = cfg.red_light_penalty
        if self._traffic_light_obeyed(situation, speed):
            terms["traffic_light"] = cfg.traffic_light_compliance_reward

        crossed = sum(1 for event in lane_invasions for marking in event.crossed_lane_markings
                      if marking in self._penalised_markings)
        terms["lane_invasion"] = cfg.lane_invasion_penalty * crossed
        excess_offset = max(0.0, abs(situation.lateral_offset_m) - cfg.lateral_offset_deadband_m)
        terms["lateral_offset"] = cfg.lateral_offset_penalty_per_m * excess_offset

        starts_here = episode.shaping is None      # no reset situation: shaping starts here
        if starts_here:
            self._start_potential(situation)
        stuck = self._update_stuck(situation, speed)
        if (speed < cfg.stopped_speed_mps and not self._waiting_at_light(situation, speed)
                and not situation.nearest_actor_distance_m < cfg.idle_blocked_distance_m):
            terms["idle"] = cfg.idle_penalty
        reason = self._reason(situation, collided, stuck)
        if reason is TerminationReason.STUCK:
            terms["stuck"] = cfg.stuck_penalty
        terminated = reason in TERMINAL_REASONS
        if episode.shaping:
            potential = 0.0 if terminated else self.potential(situation)
            if not starts_here:
                terms["goal_pose"] = cfg.shaping_gamma * potential - episode.potential
            episode.potential = potential

        terms = {name: value + 0.0 for name, value in terms.items()}    # -0.0 -> 0.0
        truncated = reason in TRUNCATION_REASONS
        episode.ended = terminated or truncated
        return StepRewardResult(reward=sum(terms.values()), terms=terms, terminated=terminated,
                                truncated=truncated, reason=reason.value)

    # -- causes ---------------------------------------------------------------------------------
    def _start_potential(self, situation: EgoSituation) -> None:
        episode = self._episode
        episode.shaping = situation.phase in self.config.goal_pose_shaping_phases
        episode.potential = self.potential(situation) if episode.shaping else 0.0

    def _counts_as_collision(self, event: CollisionEvent) -> bool:
        return math.hypot(*event.normal_impulse) >= self.config.collision_min_impulse_ns

    def _speed_closeness(self, speed: float, target: float) -> float:
        """0 at standstill, rising linearly to 1 at the target speed, back to 0 at target +
        speed_tolerance_mps (standing still never earns the speed reward)."""
        if speed <= target:
            return speed / target
        return max(0.0, 1.0 - (speed - target) / self.config.speed_tolerance_mps)

    def _progress_delta(self, situation: EgoSituation) -> float:
        episode = self._episode
        progress = situation.route_progress_m
        previous = episode.previous_progress_m
        episode.previous_progress_m = progress
        if previous is None or not math.isfinite(progress):
            return 0.0
        limit = self.config.max_progress_per_tick_m
        return min(max(progress - previous, -limit), limit)

    def _traffic_light_obeyed(self, situation: EgoSituation, speed: float) -> bool:
        """True once per light: stopped near it at red/yellow, or passed it on green."""
        cfg = self.config
        light = self._episode.light
        distance = situation.traffic_light_distance_m
        state = situation.traffic_light_state
        obeyed = False
        passed = math.isfinite(light.distance_m) and (
            not math.isfinite(distance) or distance > light.distance_m + cfg.light_passed_jump_m)
        if passed:
            obeyed = (not light.settled and light.state == TrafficLightState.GREEN
                      and not situation.ran_red_light)
            light.settled = False                      # a new light (or none) lies ahead
        elif situation.ran_red_light:
            light.settled = True
        elif (not light.settled and state in _WAITING_STATES and distance <= cfg.stop_zone_m
              and speed < cfg.stopped_speed_mps):
            obeyed = True
            light.settled = True
        light.distance_m = distance
        light.state = state
        return obeyed

    def _waiting_at_light(self, situation: EgoSituation, speed: float) -> bool:
        """Stopped at (or queueing for) a red/yellow light: neither idle nor stuck."""
        cfg = self.config
        return (situation.traffic_light_state in _WAITING_STATES
                and situation.traffic_light_distance_m <= cfg.stuck_light_excuse_m
                and speed < cfg.stopped_speed_mps)

    def _update_stuck(self, situation: EgoSituation, speed: float) -> bool:
        cfg = self.config
        episode = self._episode
        progress = situation.route_progress_m
        waiting_at_light = self._waiting_at_light(situation, speed)
        # in goal-pose phases getting closer to the goal counts as progress too (manoeuvring
        # into a bay moves little along the route)
        closer = (episode.shaping and situation.goal_distance_m
                  < episode.best_goal_distance_m - cfg.stuck_min_progress_m)
        if closer:
            episode.best_goal_distance_m = situation.goal_distance_m
        if progress > episode.best_progress_m + cfg.stuck_min_progress_m or closer:
            episode.best_progress_m = max(progress, episode.best_progress_m)
            episode.ticks_without_progress = 0
        elif not waiting_at_light:
            episode.ticks_without_progress += 1
        return episode.ticks_without_progress >= cfg.stuck_ticks

    def _reason(self, situation: EgoSituation, collided: bool, stuck: bool) -> TerminationReason:
        if collided:
            return TerminationReason.COLLISION
        if situation.on_sidewalk:
            return TerminationReason.SIDEWALK
        if situation.off_road:
            return TerminationReason.OFF_ROAD
        if situation.goal_reached:
            return TerminationReason.GOAL_REACHED
        if situation.episode_step >= self._episode.scenario.max_episode_steps:
            return TerminationReason.TIMEOUT
        if stuck:
            return TerminationReason.STUCK
        return TerminationReason.NONE
