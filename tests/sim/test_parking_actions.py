"""Phase 6 can be solved with the agent's six discrete actions, and the world reports the bay pose.

The reverse action does not steer, so the parking route is driven forward: along the aisle, then a
quarter circle into the bay, nose in, no wider than the sharpest discrete steering action can follow.
A driver that only follows the route ahead (the observation's look-ahead points) with the discrete
actions therefore parks; so does the scripted forward-left arc begun about 9 m before the bay.
"""

import math

import numpy as np
import pytest

from sim_helpers import CONFIG_DIR

from carla_rl.contract.actions import ACTION_NAMES
from carla_rl.contract.config import load_section
from carla_rl.preprocess import ObservationBuilder, PreprocessConfig
from carla_rl.sim.world import World, parking_turn_radius

PARKING_PHASE = 6
FORWARD, LEFT, RIGHT, BRAKE, COAST = (ACTION_NAMES.index(n) for n in
                                      ("fast_forward", "forward_left", "forward_right", "brake", "coast"))
PURSUIT_AHEAD_M = 4.0     # look-ahead of the route follower [m]
FOLLOW_SPEED_MPS = 2.0


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


def follow_route(world: World, turn_radius: float) -> int:
    """Discrete pure pursuit: steer (left/right action) when the route point ``PURSUIT_AHEAD_M``
    ahead of the ego's progress asks for more than half the turn radius' curvature, keep
    ``FOLLOW_SPEED_MPS``. Knows nothing of the bay: only the route, as the observation does."""
    route, progress = world.route, world._project_route()[0]
    s = min(progress + PURSUIT_AHEAD_M, route.length)
    px = np.interp(s, route.s, route.points[:, 0]) - world.x
    py = np.interp(s, route.s, route.points[:, 1]) - world.y
    left = -math.sin(world.yaw) * px + math.cos(world.yaw) * py
    curvature = 2.0 * left / max(px * px + py * py, 1e-6)
    if world.speed > FOLLOW_SPEED_MPS + 0.5:
        return BRAKE
    if abs(curvature) > 0.5 / turn_radius:
        return LEFT if curvature > 0 else RIGHT
    return FORWARD if world.speed < FOLLOW_SPEED_MPS else COAST


def parking_world(sim_config, phases, seed):
    scenario = phases[PARKING_PHASE - 1].scenario
    assert scenario.parking_goal and 5 in scenario.allowed_actions      # reverse is offered
    world = World(sim_config, scenario, seed=0)
    world.sensors_enabled = False
    frame = world.reset(seed=seed, phase=PARKING_PHASE)
    return scenario, world, frame


@pytest.mark.parametrize("seed", [0, 5])
def test_nose_in_parking_with_discrete_actions_reaches_the_goal(sim_config, phases, seed):
    scenario, world, frame = parking_world(sim_config, phases, seed)
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


def test_parking_route_is_driven_forward_into_the_bay(sim_config, phases):
    """The route ends at the bay centre along the bay axis, has no reverse part and never turns
    tighter than the sharpest discrete steering action drives."""
    _, world, _ = parking_world(sim_config, phases, 3)
    route = world.route
    assert route.reverse_from_s == math.inf
    assert np.allclose(route.points[-1], route.goal)
    last = route.points[-1] - route.points[-2]
    assert abs(math.atan2(last[1], last[0]) - route.goal_yaw) < math.radians(5.0)
    heading = np.unwrap(np.arctan2(*np.diff(route.points, axis=0).T[::-1]))
    curvature = np.abs(np.diff(heading)) / np.diff(route.s)[1:]                  # [K-2] 1/m
    tightest = parking_turn_radius(sim_config) / sim_config.parking_arc_margin
    assert curvature.max() <= 1.0 / tightest
    assert route.length == pytest.approx(phases[PARKING_PHASE - 1].scenario.route_length_m, abs=1.0)


@pytest.mark.parametrize("seed", [0, 1, 2, 5])
def test_following_the_route_with_discrete_actions_parks(sim_config, phases, seed):
    """What the learner is taught in phases 1-5 (follow the route ahead) parks in phase 6."""
    scenario, world, frame = parking_world(sim_config, phases, seed)
    radius = parking_turn_radius(sim_config)
    for _ in range(scenario.max_episode_steps):
        frame = world.apply_action(follow_route(world, radius))
        situation = frame.situation
        assert not (frame.collisions or situation.on_sidewalk or situation.off_road)
        if situation.goal_reached:
            break
    assert situation.goal_reached


@pytest.mark.parametrize("seed", [0, 4])
def test_the_bay_centre_is_in_the_observation(sim_config, phases, seed):
    """The farthest route look-ahead point is the route's end, the bay centre, from the first tick
    (the route is no longer than that look-ahead): the network sees where the bay is."""
    _, world, frame = parking_world(sim_config, phases, seed)
    builder = ObservationBuilder(load_section(CONFIG_DIR / "preprocess.yaml", "sensor_preprocessor",
                                              PreprocessConfig))
    builder.set_route(frame.route)
    farthest = max(builder.config.vector.route_lookahead_m)
    assert world.route.length <= farthest
    _, vector = builder.build(frame.camera, frame.lidar, frame.odometry, frame.speed, frame.situation)
    features = dict(zip(builder.vector_names, vector))
    scale = builder.config.vector.route_lookahead_scale_m
    dx, dy = world.route.goal[0] - world.x, world.route.goal[1] - world.y
    c, s = math.cos(world.yaw), math.sin(world.yaw)
    assert features[f"route_ahead_{farthest:g}m_x"] == pytest.approx((c * dx + s * dy) / scale, abs=1e-3)
    assert features[f"route_ahead_{farthest:g}m_y"] == pytest.approx((-s * dx + c * dy) / scale, abs=1e-3)


def test_goal_without_a_heading_reports_nan(sim_config, phases):
    world = World(sim_config, phases[0].scenario, seed=0)
    world.sensors_enabled = False
    situation = world.reset(seed=1, phase=1).situation
    assert math.isnan(situation.goal_heading_error_rad)
    assert situation.goal_distance_m == pytest.approx(
        math.hypot(world.x - world.route.goal[0], world.y - world.route.goal[1]))
