"""Phase 6 can be solved with the agent's six discrete actions, and the world reports the bay pose.

The reverse action does not steer, so tail-in parking along the planned route is out of the agent's
reach (the autopilot mapped to its nearest discrete actions gets stuck); the goal counts nose-in
parking too, and a forward-left arc begun about 9 m before the bay parks.
"""

import math

import pytest

from carla_rl.contract.actions import ACTION_NAMES
from carla_rl.sim.world import World

PARKING_PHASE = 6
FORWARD, LEFT, BRAKE, COAST = (ACTION_NAMES.index(n) for n in
                               ("fast_forward", "forward_left", "brake", "coast"))


def nose_in(world: World, turn_before_m: float, speed_mps: float, tick: int) -> int:
    """Drive along the aisle at about ``speed_mps``, then turn left into the bay and brake."""
    goal_x = world.route.goal[0]
    if world.x < goal_x - turn_before_m:
        if world.speed < speed_mps:
            return FORWARD
        return COAST if world.speed < speed_mps + 0.5 else BRAKE
    if world.yaw < math.pi / 2 - 0.1:
        return LEFT if world.speed <= speed_mps + 0.3 or tick % 2 else BRAKE
    return BRAKE


@pytest.mark.parametrize("seed", [0, 5])
def test_nose_in_parking_with_discrete_actions_reaches_the_goal(sim_config, phases, seed):
    scenario = phases[PARKING_PHASE - 1].scenario
    assert scenario.parking_goal and 5 in scenario.allowed_actions      # reverse is offered
    world = World(sim_config, scenario, seed=0)
    world.sensors_enabled = False
    frame = world.reset(seed=seed, phase=PARKING_PHASE)
    start = frame.situation.goal_distance_m
    assert math.isfinite(start) and math.isfinite(frame.situation.goal_heading_error_rad)
    for tick in range(scenario.max_episode_steps):
        frame = world.apply_action(nose_in(world, 9.0, 2.0, tick))
        situation = frame.situation
        assert not (frame.collisions or situation.on_sidewalk or situation.off_road)
        if situation.goal_reached:
            break
    assert situation.goal_reached
    assert situation.goal_distance_m < sim_config.parking_goal_radius_m < start
    assert abs(situation.goal_heading_error_rad) < math.radians(sim_config.parking_heading_tolerance_deg)


def test_goal_without_a_heading_reports_nan(sim_config, phases):
    world = World(sim_config, phases[0].scenario, seed=0)
    world.sensors_enabled = False
    situation = world.reset(seed=1, phase=1).situation
    assert math.isnan(situation.goal_heading_error_rad)
    assert situation.goal_distance_m == pytest.approx(
        math.hypot(world.x - world.route.goal[0], world.y - world.route.goal[1]))
