"""The scripted autopilot meets each phase's thresholds on a few seeds; a random policy does not.

The full check (20 seeds per phase) is ``python -m carla_rl.sim.autopilot_eval``.
"""

from __future__ import annotations

import pytest

from carla_rl.contract.sensor_frame import VehicleControl
from carla_rl.sim.autopilot import Autopilot, nearest_action
from carla_rl.sim.episode_runner import RandomPolicy, evaluate, run_episode
from carla_rl.sim.world import World

# Seeds per phase: the dense-traffic phases run long episodes, so they get fewer in the unit tests.
SEEDS = {1: 4, 2: 3, 3: 3, 4: 3, 5: 2, 6: 3, 7: 2, 8: 2, 9: 2, 10: 2}


def _world(sim_config, phases, phase):
    world = World(sim_config, phases[phase - 1].scenario, seed=0)
    world.phase = phase
    world.sensors_enabled = False  # the policies here only read the situation
    return world


@pytest.mark.parametrize("phase", sorted(SEEDS))
def test_autopilot_meets_thresholds(sim_config, phases, phase):
    world = _world(sim_config, phases, phase)
    scenario = phases[phase - 1].scenario
    rates, outcomes = evaluate(
        world, lambda w, seed: Autopilot(w), range(SEEDS[phase]), scenario.max_episode_steps
    )
    th = phases[phase - 1].thresholds
    assert rates.passes(th.goal_rate, th.collision_free_rate, th.sidewalk_free_rate), outcomes


@pytest.mark.parametrize("phase", sorted(SEEDS))
def test_random_policy_fails_thresholds(sim_config, phases, phase):
    world = _world(sim_config, phases, phase)
    scenario = phases[phase - 1].scenario
    rates, _ = evaluate(
        world,
        lambda w, seed: RandomPolicy(scenario.allowed_actions, seed=seed),
        range(2),
        scenario.max_episode_steps,
    )
    th = phases[phase - 1].thresholds
    assert not rates.passes(th.goal_rate, th.collision_free_rate, th.sidewalk_free_rate)


def test_episode_outcome_fields(sim_config, phases):
    world = _world(sim_config, phases, 1)
    outcome = run_episode(world, Autopilot(world), phases[0].scenario.max_episode_steps, seed=0)
    assert outcome.goal and not outcome.collision and not outcome.sidewalk and not outcome.timeout
    route_length = phases[0].scenario.route_length_m
    assert route_length - 5.0 < outcome.distance_m < route_length + 5.0


def test_nearest_action(sim_config):
    assert nearest_action(VehicleControl(throttle=0.9), sim_config) == 0
    assert nearest_action(VehicleControl(throttle=0.5, steer=-0.6), sim_config) == 1
    assert nearest_action(VehicleControl(throttle=0.4, steer=0.7), sim_config) == 2
    assert nearest_action(VehicleControl(brake=0.8), sim_config) == 3
    assert nearest_action(VehicleControl(), sim_config) == 4
    assert nearest_action(VehicleControl(throttle=0.3, reverse=True), sim_config) == 5
    assert nearest_action(VehicleControl(throttle=0.3, reverse=True), sim_config, [0, 3, 4]) in (
        0,
        3,
        4,
    )
