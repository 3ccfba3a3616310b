"""Events with CARLA's meaning: lane invasion, collision, red-light running, goal."""

from __future__ import annotations

import math

import numpy as np

from carla_rl.contract.sensor_frame import LaneMarking, TrafficLightState, VehicleControl
from carla_rl.sim.world import STATIC_ACTOR_ID, VEHICLE_ID_BASE
from sim_helpers import make_world

COAST = VehicleControl()


def _drive_across(world, y_from, yaw, steps=40):
    world.x, world.y, world.yaw, world.speed = 100.0, y_from, yaw, 5.0
    crossed = []
    for _ in range(steps):
        world.speed = 5.0
        frame = world.step(COAST)
        crossed += [m for event in frame.lane_invasions for m in event.crossed_lane_markings]
        assert frame.situation.lane_invasion_events == len(frame.lane_invasions)
    return crossed


def test_crossing_the_solid_edge_line_reports_solid(sim_config):
    # Straight map: lanes 3.5 m wide, two per direction; the road edge (y = -7 m) is SOLID.
    world = make_world(sim_config)
    crossed = _drive_across(world, -5.5, math.radians(-20.0), steps=20)
    assert LaneMarking.SOLID in crossed
    assert LaneMarking.BROKEN not in crossed


def test_lane_change_reports_broken_and_centre_reports_solidsolid(sim_config):
    world = make_world(sim_config)
    # Start with both front wheels inside the lane (wheel y = centre y + 0.375 m + 0.773 m).
    assert set(_drive_across(world, -5.0, math.radians(15.0), steps=20)) == {LaneMarking.BROKEN}
    assert LaneMarking.SOLIDSOLID in _drive_across(world, -1.5, math.radians(15.0), steps=20)


def test_no_invasion_when_keeping_the_lane(sim_config):
    world = make_world(sim_config)
    assert _drive_across(world, -1.75, 0.0) == []


def test_collision_event_names_the_other_actor(sim_config):
    world = make_world(sim_config, num_vehicles=3)
    veh = world.vehicles
    veh.static[:] = True
    veh.pos[:] = [[130.0, -1.75], [400.0, 1.75], [450.0, 1.75]]
    veh.yaw[:] = 0.0
    world.x, world.y, world.yaw, world.speed = 110.0, -1.75, 0.0, 8.0
    events = []
    for _ in range(80):
        frame = world.step(VehicleControl(throttle=0.5))
        assert frame.situation.collision_events == len(frame.collisions)
        events += frame.collisions
        if events:
            break
    assert events and events[0].other_actor_id == VEHICLE_ID_BASE + 0
    assert events[0].normal_impulse[0] < 0.0  # pushed back, against +x travel
    assert world.speed == 0.0


def test_driving_into_a_building_is_a_static_collision(sim_config):
    world = make_world(sim_config)
    world.x, world.y, world.yaw, world.speed = 100.0, -5.0, -math.pi / 2.0, 5.0
    ids = []
    for _ in range(60):
        ids += [e.other_actor_id for e in world.step(VehicleControl(throttle=0.3)).collisions]
    assert STATIC_ACTOR_ID in ids


def test_sidewalk_and_off_road_flags(sim_config):
    world = make_world(sim_config)
    world.x, world.y, world.yaw, world.speed = 100.0, -8.5, 0.0, 0.0
    sit = world.step(COAST).situation
    assert sit.on_sidewalk and sit.off_road
    world.x, world.y = 100.0, -1.75
    sit = world.step(COAST).situation
    assert not sit.on_sidewalk and not sit.off_road


def test_running_a_red_light_is_reported(sim_config):
    world = make_world(sim_config, map_name="town", traffic_lights=True)
    net = world.road_network
    lane = int(np.nonzero(net.lane_light >= 0)[0][0])
    light = int(net.lane_light[lane])
    cfg = world.lights.cfg
    half = cfg.green_s + cfg.yellow_s + cfg.all_red_s
    world.lights.offset[:] = (
        cfg.green_s + cfg.yellow_s + 0.01 - world.lights.group * half
    ) % cfg.cycle_s
    world.episode_step = 0
    p, h = net.lane_pose(np.array([lane]), np.array([net.lane_len[lane] - 6.0]))
    world.x, world.y, world.yaw = float(p[0, 0]), float(p[0, 1]), float(h[0])
    ran = False
    for _ in range(30):
        world.speed = 6.0
        frame = world.step(COAST)
        assert world.lights.state[light] == TrafficLightState.RED
        ran |= frame.situation.ran_red_light
    assert ran


def test_goal_reached_at_route_end(sim_config):
    world = make_world(sim_config)
    goal = world.route.goal
    world.x, world.y = float(goal[0]) - 1.0, float(goal[1])
    sit = world.step(COAST).situation
    assert sit.goal_reached
    assert sit.route_remaining_m < 2.0
