"""Goal-pose shaping: potential-based (telescopes), points toward the bay, off unless configured."""

import dataclasses
import math

import numpy as np
import pytest

from carla_rl.reward import RewardCalculator, RewardConfig
from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.contract.sensor_frame import EgoSituation, Odometry

PARKING = 6
SCENARIO = ScenarioConfig(parking_goal=True, target_speed_mps=3.0, max_episode_steps=50)
# only the shaping term moves: idle, speed and stuck rules switched off
CONFIG = RewardConfig(idle_penalty=0.0, target_speed_reward=0.0, stuck_ticks=100000,
                      goal_pose_shaping_phases=[PARKING], shaping_gamma=0.97)


def situation(distance, heading=0.0, phase=PARKING, **extra):
    return EgoSituation(phase=phase, goal_distance_m=distance, goal_heading_error_rad=heading, **extra)


def run(calculator, situations):
    return [calculator.step(s, Odometry(), 1.0, [], []) for s in situations]


def random_episode(rng, length):
    return [situation(float(rng.uniform(0.0, 40.0)), float(rng.uniform(-math.pi / 2, math.pi / 2)),
                      episode_step=k + 1) for k in range(length)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_discounted_sum_telescopes_over_a_truncated_episode(seed):
    rng = np.random.default_rng(seed)
    start, states = situation(30.0, 1.2), random_episode(rng, 20)
    calculator = RewardCalculator(CONFIG)
    calculator.reset(SCENARIO, start)
    terms = [r.terms["goal_pose"] for r in run(calculator, states)]
    gamma = CONFIG.shaping_gamma
    discounted = sum(gamma ** t * f for t, f in enumerate(terms))
    expected = gamma ** len(states) * calculator.potential(states[-1]) - calculator.potential(start)
    assert discounted == pytest.approx(expected, abs=1e-9)
    assert calculator.potential(start) < 0.0


@pytest.mark.parametrize("seed", [3, 4])
def test_terminal_tick_takes_phi_zero_so_the_sum_is_minus_phi_start(seed):
    rng = np.random.default_rng(seed)
    start = situation(25.0, 0.4)
    states = random_episode(rng, 12)
    states[-1] = dataclasses.replace(states[-1], goal_reached=True)   # terminal success
    calculator = RewardCalculator(CONFIG)
    calculator.reset(SCENARIO, start)
    results = run(calculator, states)
    assert results[-1].terminated and results[-1].reason == "goal_reached"
    gamma = CONFIG.shaping_gamma
    discounted = sum(gamma ** t * r.terms["goal_pose"] for t, r in enumerate(results))
    assert discounted == pytest.approx(-calculator.potential(start), abs=1e-9)
    # on the terminal tick itself: F = gamma * 0 - Phi(s)
    assert results[-1].terms["goal_pose"] == pytest.approx(-calculator.potential(states[-2]))


def test_collision_is_terminal_for_the_potential_too():
    from carla_rl.contract.sensor_frame import CollisionEvent
    calculator = RewardCalculator(CONFIG)
    calculator.reset(SCENARIO, situation(10.0))
    result = calculator.step(situation(9.0), Odometry(), 1.0, [CollisionEvent(1, (50.0, 0.0, 0.0))], [])
    assert result.terminated
    assert result.terms["goal_pose"] == pytest.approx(CONFIG.goal_distance_potential_per_m * 10.0)


def test_points_toward_the_bay():
    def first_term(start, after):
        calculator = RewardCalculator(dataclasses.replace(CONFIG, shaping_gamma=0.99))
        calculator.reset(SCENARIO, start)
        return run(calculator, [after])[0].terms["goal_pose"]

    closer = first_term(situation(20.0), situation(19.5))
    still = first_term(situation(20.0), situation(20.0))
    away = first_term(situation(20.0), situation(20.5))
    assert closer > still > away and closer > 0.0 > away
    # near the bay, turning toward its axis pays; the same turn far away does not count
    assert first_term(situation(2.0, 1.0), situation(2.0, 0.5)) > first_term(situation(2.0, 1.0),
                                                                            situation(2.0, 1.0))
    far = RewardCalculator(CONFIG)
    assert far.potential(situation(20.0, 1.0)) == far.potential(situation(20.0, 0.0))
    # nose in and tail in are the same pose (the world folds the error to [-pi/2, pi/2))
    assert far.potential(situation(1.0, 0.3)) == far.potential(situation(1.0, -0.3))
    assert far.potential(situation(0.0, 0.0)) == 0.0


def test_off_in_other_phases_unless_configured():
    states = [situation(20.0 - k, phase=3, episode_step=k + 1) for k in range(5)]
    calculator = RewardCalculator(CONFIG)
    calculator.reset(SCENARIO, situation(21.0, phase=3))
    assert all(r.terms["goal_pose"] == 0.0 for r in run(calculator, states))
    configured = RewardCalculator(dataclasses.replace(CONFIG, goal_pose_shaping_phases=[3, PARKING]))
    configured.reset(SCENARIO, situation(21.0, phase=3))
    assert all(r.terms["goal_pose"] > 0.0 for r in run(configured, states))
    nowhere = RewardCalculator(dataclasses.replace(CONFIG, goal_pose_shaping_phases=[]))
    nowhere.reset(SCENARIO, situation(21.0))
    assert all(r.terms["goal_pose"] == 0.0 for r in run(nowhere, [situation(20.0 - k) for k in range(5)]))


def test_unknown_goal_distance_has_zero_potential():
    calculator = RewardCalculator(CONFIG)
    assert calculator.potential(EgoSituation(phase=PARKING)) == 0.0       # inf distance, NaN heading


def test_without_a_reset_situation_shaping_starts_at_the_first_tick():
    calculator = RewardCalculator(CONFIG)
    calculator.reset(SCENARIO)
    results = run(calculator, [situation(10.0), situation(9.0)])
    assert results[0].terms["goal_pose"] == 0.0
    assert results[1].terms["goal_pose"] == pytest.approx(
        CONFIG.shaping_gamma * calculator.potential(situation(9.0)) - calculator.potential(situation(10.0)))


def test_getting_closer_to_the_goal_is_not_stuck():
    config = dataclasses.replace(CONFIG, stuck_ticks=3)
    calculator = RewardCalculator(config)
    calculator.reset(SCENARIO, situation(20.0))
    # no route progress, but 1 m closer every tick
    results = run(calculator, [situation(19.0 - k, episode_step=k + 1) for k in range(8)])
    assert not any(r.done for r in results)
    calculator.reset(SCENARIO, situation(20.0))
    # the same ticks without getting closer: stuck after stuck_ticks (the first tick sets the marks)
    results = run(calculator, [situation(20.0, episode_step=k + 1) for k in range(4)])
    assert not any(r.done for r in results[:-1])
    assert results[-1].truncated and results[-1].reason == "stuck"


def test_shipped_shaping_gamma_is_the_learners_gamma():
    from pathlib import Path

    from carla_rl.contract.config import load_section
    from carla_rl.learner.agent_config import load_agent_config
    from carla_rl.reward import NODE_NAME

    root = Path(__file__).resolve().parents[2] / "config"
    reward = load_section(root / "reward.yaml", NODE_NAME, RewardConfig)
    assert reward.shaping_gamma == load_agent_config(root / "agent.yaml").gamma
