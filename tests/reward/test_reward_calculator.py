"""RewardCalculator: each term agrees with its cause; termination vs truncation."""

import dataclasses
import math

import pytest

from carla_rl.reward import TERM_NAMES, RewardCalculator, RewardConfig
from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.sensor_frame import (CollisionEvent, EgoSituation, LaneInvasionEvent, LaneMarking,
                                   Odometry, TrafficLightState)

TARGET_SPEED = 8.0
SCENARIO = ScenarioConfig(target_speed_mps=TARGET_SPEED, max_episode_steps=100)
# Neutral: every shaping term is zero (standing still earns no target-speed reward; the idle
# cost of standing still is switched off in NEUTRAL_CONFIG and tested on its own below).
NEUTRAL_SPEED = 0.0
NEUTRAL_CONFIG = RewardConfig(idle_penalty=0.0)


def make(config=None, scenario=SCENARIO) -> RewardCalculator:
    calculator = RewardCalculator(config or NEUTRAL_CONFIG)
    calculator.reset(scenario)
    return calculator


def step(calculator, speed=NEUTRAL_SPEED, collisions=(), invasions=(), **situation):
    return calculator.step(EgoSituation(**situation), Odometry(), speed, list(collisions),
                           list(invasions))


def only_term(result, name):
    others = {k: v for k, v in result.terms.items() if k != name}
    assert all(v == 0.0 for v in others.values()), others
    return result.terms[name]


def test_neutral_tick_is_zero_and_running():
    result = step(make())
    assert result.reward == 0.0 and not result.terminated and not result.truncated
    assert result.reason == "" and tuple(result.terms) == TERM_NAMES


def test_collision_gives_exactly_the_collision_term_and_terminates():
    result = step(make(), collisions=[CollisionEvent(7, (100.0, 0.0, 0.0))])
    assert only_term(result, "collision") == -1000.0
    assert result.reward == -1000.0
    assert result.terminated and not result.truncated and result.reason == "collision"


def test_two_collisions_in_one_tick_count_once():
    events = [CollisionEvent(1, (5.0, 0.0, 0.0)), CollisionEvent(2, (0.0, 5.0, 0.0))]
    assert step(make(), collisions=events).terms["collision"] == -1000.0


def test_collision_below_impulse_floor_is_ignored():
    calculator = make(RewardConfig(collision_min_impulse_ns=10.0))
    result = step(calculator, collisions=[CollisionEvent(1, (3.0, 4.0, 0.0))])   # |J| = 5
    assert result.terms["collision"] == 0.0 and not result.terminated


def test_sidewalk_and_off_road_terminate():
    sidewalk = step(make(), on_sidewalk=True)
    assert only_term(sidewalk, "sidewalk") == -800.0
    assert sidewalk.terminated and sidewalk.reason == "sidewalk"
    off_road = step(make(), off_road=True)
    assert only_term(off_road, "off_road") == RewardConfig().off_road_penalty
    assert off_road.terminated and off_road.reason == "off_road"


def test_goal_is_terminal_success():
    result = step(make(), goal_reached=True)
    assert only_term(result, "goal") == 300.0
    assert result.terminated and result.reason == "goal_reached"


def test_collision_wins_over_goal_on_the_same_tick():
    result = step(make(), goal_reached=True, collisions=[CollisionEvent(1, (1.0, 0.0, 0.0))])
    assert result.reason == "collision"
    assert result.reward == pytest.approx(-1000.0 + 300.0)


def test_progress_is_per_metre_and_clipped():
    calculator = make()
    assert step(calculator, route_progress_m=10.0).terms["progress"] == 0.0   # baseline
    assert only_term(step(calculator, route_progress_m=12.5), "progress") == pytest.approx(2.5)
    assert step(calculator, route_progress_m=11.5).terms["progress"] == pytest.approx(-1.0)
    jump = RewardConfig().max_progress_per_tick_m
    assert step(calculator, route_progress_m=100.0).terms["progress"] == pytest.approx(jump)


def test_target_speed_peaks_at_target_and_overspeed_is_penalised():
    config = RewardConfig()
    at_target = step(make(), speed=TARGET_SPEED)
    assert only_term(at_target, "target_speed") == pytest.approx(config.target_speed_reward)
    half_way = step(make(), speed=TARGET_SPEED / 2)
    assert half_way.terms["target_speed"] == pytest.approx(config.target_speed_reward / 2)
    above = step(make(), speed=TARGET_SPEED + config.speed_tolerance_mps / 2)
    assert above.terms["target_speed"] == pytest.approx(config.target_speed_reward / 2)
    slow_scenario = ScenarioConfig(target_speed_mps=1.0)
    assert step(make(scenario=slow_scenario), speed=0.0).terms["target_speed"] == 0.0
    fast = TARGET_SPEED + config.overspeed_margin_mps + 2.0
    over = step(make(), speed=fast)
    assert over.terms["overspeed"] == pytest.approx(2.0 * config.overspeed_penalty_per_mps)
    assert over.reward < at_target.reward


def test_reversing_at_the_target_speed_earns_no_speed_reward():
    """Backing and filling in place must not pay like driving the route (phase 6 offers reverse)."""
    config = RewardConfig()
    forward = make().step(EgoSituation(), Odometry(vx=TARGET_SPEED), TARGET_SPEED, [], [])
    assert only_term(forward, "target_speed") == pytest.approx(config.target_speed_reward)
    reversing = make().step(EgoSituation(), Odometry(vx=-TARGET_SPEED), TARGET_SPEED, [], [])
    assert reversing.terms["target_speed"] == 0.0 and reversing.reward == 0.0
    # the rest still sees the speed's magnitude: reversing too fast is overspeed
    fast = TARGET_SPEED + config.overspeed_margin_mps + 2.0
    too_fast = make().step(EgoSituation(), Odometry(vx=-fast), fast, [], [])
    assert too_fast.terms["overspeed"] == pytest.approx(2.0 * config.overspeed_penalty_per_mps)


def test_proximity_only_below_threshold():
    threshold = RewardConfig().proximity_threshold_m
    assert only_term(step(make(), nearest_actor_distance_m=threshold - 0.1),
                     "proximity") == -15.0
    assert step(make(), nearest_actor_distance_m=threshold + 0.1).reward == 0.0
    assert step(make(), nearest_actor_distance_m=math.inf).reward == 0.0


def test_running_a_red_light_is_penalised_and_not_rewarded():
    calculator = make()
    red = dict(traffic_light_state=TrafficLightState.RED)
    step(calculator, speed=TARGET_SPEED, traffic_light_distance_m=20.0, **red)
    result = step(calculator, speed=TARGET_SPEED, traffic_light_distance_m=math.inf,
                  ran_red_light=True, **red)
    assert result.terms["red_light"] == RewardConfig().red_light_penalty
    assert result.terms["traffic_light"] == 0.0
    assert not result.terminated


def test_stopping_at_red_is_rewarded_once():
    calculator = make()
    red = dict(traffic_light_state=TrafficLightState.RED, traffic_light_distance_m=4.0)
    first = step(calculator, **red)
    assert only_term(first, "traffic_light") == 15.0
    assert step(calculator, **red).terms["traffic_light"] == 0.0


def test_stopping_far_from_the_light_is_not_compliance():
    far = RewardConfig().stop_zone_m + 5.0
    result = step(make(), traffic_light_state=TrafficLightState.RED, traffic_light_distance_m=far)
    assert result.terms["traffic_light"] == 0.0


def test_passing_on_green_is_rewarded():
    calculator = make()
    green = dict(traffic_light_state=TrafficLightState.GREEN)
    assert step(calculator, speed=TARGET_SPEED, traffic_light_distance_m=8.0,
                **green).terms["traffic_light"] == 0.0
    assert step(calculator, speed=TARGET_SPEED, traffic_light_distance_m=2.0,
                **green).terms["traffic_light"] == 0.0
    passed = step(calculator, speed=TARGET_SPEED, traffic_light_distance_m=80.0, **green)
    assert passed.terms["traffic_light"] == 15.0


def test_solid_lane_invasion_penalised_per_marking_broken_free():
    config = RewardConfig()
    invasions = [LaneInvasionEvent((LaneMarking.SOLID, LaneMarking.BROKEN)),
                 LaneInvasionEvent((LaneMarking.SOLIDSOLID,))]
    result = step(make(), invasions=invasions)
    assert only_term(result, "lane_invasion") == 2 * config.lane_invasion_penalty
    broken = step(make(), invasions=[LaneInvasionEvent((LaneMarking.BROKEN,))])
    assert broken.reward == 0.0


def test_lateral_offset_beyond_deadband():
    config = RewardConfig()
    result = step(make(), lateral_offset_m=-(config.lateral_offset_deadband_m + 1.0))
    assert only_term(result, "lateral_offset") == pytest.approx(
        config.lateral_offset_penalty_per_m)
    assert step(make(), lateral_offset_m=config.lateral_offset_deadband_m).reward == 0.0


def test_timeout_truncates_not_terminates():
    calculator = make()
    assert not step(calculator, episode_step=SCENARIO.max_episode_steps - 1).done
    result = step(calculator, episode_step=SCENARIO.max_episode_steps)
    assert result.truncated and not result.terminated and result.reason == "timeout"


def test_goal_on_the_last_tick_is_a_success_not_a_timeout():
    result = step(make(), episode_step=SCENARIO.max_episode_steps, goal_reached=True)
    assert result.terminated and not result.truncated and result.reason == "goal_reached"


def test_stuck_truncates_after_n_ticks_without_progress():
    config = dataclasses.replace(NEUTRAL_CONFIG, stuck_ticks=5)
    calculator = make(config)
    # the first tick sets the baseline; then 5 ticks without progress
    results = [step(calculator, episode_step=i, route_progress_m=3.0) for i in range(6)]
    assert not any(r.done for r in results[:-1])
    assert calculator.ticks_without_progress == 5
    last = results[-1]
    assert last.truncated and not last.terminated and last.reason == "stuck"
    assert last.terms["stuck"] == config.stuck_penalty


def test_progress_resets_the_stuck_counter():
    config = dataclasses.replace(NEUTRAL_CONFIG, stuck_ticks=3)
    calculator = make(config)
    progress = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0]
    assert not any(step(calculator, route_progress_m=p).done for p in progress)


def test_waiting_at_red_light_is_not_stuck():
    config = dataclasses.replace(NEUTRAL_CONFIG, stuck_ticks=3)
    calculator = make(config)
    red = dict(traffic_light_state=TrafficLightState.RED, traffic_light_distance_m=20.0)
    results = [step(calculator, episode_step=i, **red) for i in range(10)]
    assert not any(r.done for r in results)


def test_terms_sum_to_reward_on_a_busy_tick():
    calculator = make()
    step(calculator, route_progress_m=0.0)
    result = step(calculator, speed=TARGET_SPEED + 3.0, route_progress_m=1.7,
                  nearest_actor_distance_m=1.0, lateral_offset_m=0.9, ran_red_light=True,
                  invasions=[LaneInvasionEvent((LaneMarking.SOLID,))])
    assert result.reward == sum(result.terms.values())
    assert sum(1 for v in result.terms.values() if v != 0.0) >= 5


def test_step_after_episode_end_requires_reset():
    calculator = make()
    step(calculator, goal_reached=True)
    with pytest.raises(RuntimeError, match="reset"):
        step(calculator)
    calculator.reset(SCENARIO)
    assert not step(calculator).done


def test_step_before_reset_fails():
    with pytest.raises(RuntimeError, match="reset"):
        RewardCalculator(RewardConfig()).step(EgoSituation(), Odometry(), 0.0, [], [])


def test_idle_costs_per_tick_stopped_but_not_when_moving_or_at_a_red_light():
    config = RewardConfig()
    assert config.idle_penalty < 0.0
    assert only_term(step(make(config), speed=0.0), "idle") == config.idle_penalty
    moving = step(make(config), speed=config.stopped_speed_mps + 0.1)
    assert moving.terms["idle"] == 0.0
    at_red = step(make(config), speed=0.0, traffic_light_state=TrafficLightState.RED,
                  traffic_light_distance_m=5.0)
    assert at_red.terms["idle"] == 0.0
    far_from_red = step(make(config), speed=0.0, traffic_light_state=TrafficLightState.RED,
                        traffic_light_distance_m=config.stuck_light_excuse_m + 1.0)
    assert far_from_red.terms["idle"] == config.idle_penalty
    behind_a_car = step(make(config), speed=0.0,
                        nearest_actor_distance_m=config.idle_blocked_distance_m - 1.0)
    assert behind_a_car.terms["idle"] == 0.0
