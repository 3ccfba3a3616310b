"""Reward weights and episode-end rules (``reward_evaluator`` block of config/reward.yaml).

Signs are part of the weights: penalties are negative numbers, rewards positive.
"""

from __future__ import annotations

from dataclasses import dataclass

from carla_rl.contract.config import param
from carla_rl.contract.sensor_frame import LaneMarking

DEFAULT_PENALISED_MARKINGS = [LaneMarking.SOLID.value, LaneMarking.SOLIDSOLID.value,
                              LaneMarking.SOLIDBROKEN.value, LaneMarking.BROKENSOLID.value]


@dataclass(frozen=True)
class RewardConfig:
    """Weights of the named reward terms and the rules that end an episode."""

    # terminal events
    collision_penalty: float = param(-1000.0, "Any collision this tick (terminal)",
                                     low=-1e6, high=0.0)
    collision_min_impulse_ns: float = param(0.0, "Collisions with a smaller |normal impulse| "
                                            "[N*s] are ignored (sensor noise)", low=0.0, high=1e6)
    sidewalk_penalty: float = param(-800.0, "Ego on the sidewalk (terminal)", low=-1e6, high=0.0)
    off_road_penalty: float = param(-800.0, "Ego off the drivable road (terminal)",
                                    low=-1e6, high=0.0)
    goal_reward: float = param(300.0, "Goal reached (terminal success)", low=0.0, high=1e6)
    # dense shaping
    progress_reward_per_m: float = param(1.0, "Per metre of route progress this tick "
                                         "(negative when driving back)", low=0.0, high=1e3)
    max_progress_per_tick_m: float = param(5.0, "Progress per tick is clipped to +- this "
                                           "(teleports, route switches)", low=0.0, high=100.0)
    target_speed_reward: float = param(0.5, "Per tick at exactly the scenario's target speed; "
                                       "rises linearly from 0 at standstill, falls back to 0 at "
                                       "target + speed_tolerance_mps; 0 while reversing", low=0.0, high=1e3)
    speed_tolerance_mps: float = param(4.0, "Speed above target where the target-speed reward "
                                       "reaches 0", low=0.1, high=50.0)
    overspeed_penalty_per_mps: float = param(-0.5, "Per tick and m/s above target + "
                                             "overspeed_margin_mps. Full throttle down the straight "
                                             "road returns -19 at -0.5 (334 at -0.1), holding the target "
                                             "541; at -0.1 policies kept full throttle everywhere",
                                             low=-1e3, high=0.0)
    overspeed_margin_mps: float = param(1.0, "Speed above target that is not yet penalised",
                                        low=0.0, high=50.0)
    proximity_penalty: float = param(-15.0, "Per tick with another actor closer than "
                                     "proximity_threshold_m", low=-1e6, high=0.0)
    proximity_threshold_m: float = param(3.0, "Nearest-actor distance that counts as too close",
                                         low=0.0, high=100.0)
    # goal-pose shaping (potential-based)
    goal_pose_shaping_phases: list[int] = param(
        default_factory=lambda: [6],
        description="Phases (EgoSituation.phase) whose episodes earn the goal_pose term: "
        "F = shaping_gamma * Phi(s') - Phi(s), Phi = -(goal_distance_potential_per_m x distance to "
        "the goal + goal_heading_potential_per_rad x |heading error to the bay axis| x "
        "max(0, 1 - distance / goal_heading_radius_m)), Phi = 0 after a terminal tick. Potential-"
        "based, so the best policy is unchanged; without it the parking phase paid nothing for "
        "getting closer to the bay (the goal is a 1 m / 20 deg pose) until a chance park. "
        "Empty = off everywhere", low=1, high=1000)
    goal_distance_potential_per_m: float = param(
        5.0, "Potential per metre from the goal (Phi = 0 at the goal). At 5 a 30 m approach is "
        "worth ~150, half the goal reward: enough to lead the way, not enough to replace it",
        low=0.0, high=1e4)
    goal_heading_potential_per_rad: float = param(
        30.0, "Potential per radian of heading error to the bay axis (nose or tail in), counted "
        "fully at the goal and fading to 0 at goal_heading_radius_m (a car in the aisle must "
        "point along it, not at the bay)", low=0.0, high=1e4)
    goal_heading_radius_m: float = param(8.0, "Distance from the goal beyond which the heading "
                                         "error does not count in the potential", low=0.1,
                                         high=1e4)
    shaping_gamma: float = param(0.99, "gamma of F = gamma Phi(s') - Phi(s): the learner's discount "
                                 "(config/agent.yaml gamma). Shaping leaves the optimal policy "
                                 "unchanged only when they are equal", low=0.0, high=1.0)
    # traffic lights
    traffic_light_compliance_reward: float = param(
        15.0, "Once per light: stopped in the stop zone at red/yellow, or passed it on green",
        low=0.0, high=1e6)
    red_light_penalty: float = param(-150.0, "Crossing a stop line on red (EgoSituation."
                                     "ran_red_light)", low=-1e6, high=0.0)
    stop_zone_m: float = param(10.0, "Distance to the stop line within which a stop counts as "
                               "waiting at the light", low=0.0, high=100.0)
    stopped_speed_mps: float = param(0.5, "Below this speed the ego counts as stopped",
                                     low=0.0, high=10.0)
    light_passed_jump_m: float = param(5.0, "The light is passed when its distance grows by more "
                                       "than this in one tick (the next light, or none)",
                                       low=0.1, high=1000.0)
    # lane discipline
    lane_invasion_penalty: float = param(-10.0, "Per penalised marking crossed", low=-1e6,
                                         high=0.0)
    penalised_markings: list[int] = param(
        default_factory=lambda: list(DEFAULT_PENALISED_MARKINGS),
        description="LaneMarking values whose crossing is penalised (default: the solid ones)",
        low=0, high=max(LaneMarking))
    lateral_offset_penalty_per_m: float = param(-0.5, "Per tick and metre of |lateral offset| "
                                                "beyond lateral_offset_deadband_m",
                                                low=-1e3, high=0.0)
    lateral_offset_deadband_m: float = param(0.3, "Offset from the lane centre that is free",
                                             low=0.0, high=10.0)
    # truncation
    idle_penalty: float = param(-5.0, "Per tick stopped (below stopped_speed_mps), not waiting at "
                                "a red/yellow light and with no actor within "
                                "idle_blocked_distance_m: standing still must cost now. Paid only "
                                "as the stuck penalty, 100 ticks later and discounted by 0.99^100, "
                                "standing still weighed less than the sidewalk (-800) a few seconds "
                                "ahead, and the agent learned to stand still on the curvy road",
                                low=-1e6, high=0.0)
    idle_blocked_distance_m: float = param(10.0, "Stopping with another actor this close is "
                                           "waiting, not idling", low=0.0, high=1000.0)
    stuck_ticks: int = param(100, "Truncate ('stuck') after this many ticks without route progress "
                             "(ticks waiting at a red/yellow light do not count)",
                             low=1, high=100000)
    stuck_light_excuse_m: float = param(40.0, "Ticks stopped at a red/yellow light closer than "
                                        "this (queueing included) do not count as stuck",
                                        low=0.0, high=1000.0)
    stuck_min_progress_m: float = param(0.5, "Progress beyond the best so far that resets the "
                                        "stuck counter", low=0.0, high=100.0)
    stuck_penalty: float = param(-900.0, "On the tick that truncates as stuck. Worse than leaving "
                                 "the road: with -100 the agent learned to stand still in the curvy "
                                 "phase rather than risk the sidewalk (-800)", low=-1e6, high=0.0)
    sync_max_pending_steps: int = param(8, "Ticks the step synchroniser keeps open at once",
                                        low=1, high=1000)
