"""Traffic behaviour with physical meaning: IDM stopping, red lights, pedestrians at crosswalks."""

from __future__ import annotations

import dataclasses

import numpy as np

from carla_rl.contract.sensor_frame import TrafficLightState, VehicleControl
from carla_rl.sim.traffic import CROSS, WAIT

from sim_helpers import make_world

PARK = VehicleControl(brake=1.0)


def _park_ego_far_away(world):
    world.x, world.y, world.speed = -1000.0, -1000.0, 0.0


def test_idm_car_stops_short_of_a_stopped_leader(sim_config):
    world = make_world(sim_config, num_vehicles=2, target_speed_mps=10.0)
    _park_ego_far_away(world)
    veh = world.vehicles
    lane = world.road_network.spawn_lanes[0]
    veh.lane[:] = lane
    veh.next_lane[:] = -1
    veh.s[:] = [200.0, 120.0]  # 0 = standing leader, 1 = follower 80 m behind
    veh.speed[:] = [0.0, 10.0]
    veh.static[0] = True
    veh.pos, veh.yaw = world.road_network.lane_pose(veh.lane, veh.s)
    for _ in range(400):
        world.step(PARK)
    gap = veh.s[0] - veh.s[1] - veh.length[0]
    assert veh.speed[1] < 0.05
    assert 0.5 < gap < sim_config.idm.min_gap_m + 3.0


def _light_red_now(world, light):
    """Shift the signal plan of ``light`` so that its red phase starts now."""
    cfg = world.lights.cfg
    half = cfg.green_s + cfg.yellow_s + cfg.all_red_s
    t = world.episode_step * world.dt
    world.lights.offset[:] = (
        cfg.green_s + cfg.yellow_s + 0.01 - t - world.lights.group * half
    ) % cfg.cycle_s
    world.lights.update(t)
    assert world.lights.state[light] == TrafficLightState.RED


def test_red_light_holds_traffic(sim_config):
    long_red = dataclasses.replace(
        sim_config, traffic_lights=dataclasses.replace(sim_config.traffic_lights, all_red_s=10.0)
    )  # red lasts 28 s
    world = make_world(long_red, map_name="town", num_vehicles=1, traffic_lights=True)
    _park_ego_far_away(world)
    net, veh = world.road_network, world.vehicles
    lane = int(np.nonzero(net.lane_light >= 0)[0][0])
    light = int(net.lane_light[lane])
    veh.lane[:] = lane
    veh.s[:] = 5.0
    veh.speed[:] = 7.0
    veh.next_lane[:] = net.succ[lane, 0]
    _light_red_now(world, light)
    for _ in range(300):  # 15 s, shorter than the red phase
        world.step(PARK)
        assert world.lights.state[light] == TrafficLightState.RED
    assert veh.lane[0] == lane
    assert veh.speed[0] < 0.2  # IDM creeps up to its jam gap
    assert net.lane_len[lane] - veh.s[0] > 1.0  # stopped before the stop line
    assert net.lane_len[lane] - veh.s[0] < 10.0
    for _ in range(500):  # green comes: it drives on
        world.step(PARK)
    assert veh.lane[0] != lane


def _pedestrian_before_red_crosswalk(sim_config, jaywalk):
    cfg = dataclasses.replace(
        sim_config,
        pedestrians=dataclasses.replace(sim_config.pedestrians, crossing_probability=1.0),
    )
    world = make_world(
        cfg, map_name="town", num_pedestrians=1, traffic_lights=True, jaywalk_probability=jaywalk
    )
    _park_ego_far_away(world)
    peds, paths = world.pedestrians, world.road_network.ped_paths
    cp = int(np.nonzero(paths.cp_is_crosswalk & (paths.cp_walk_light >= 0))[0][0])
    peds.loop[:] = paths.cp_loop[cp]
    peds.u[:] = paths.cp_u[cp] - 0.2
    peds.direction[:] = 1.0
    peds.state[:] = 0
    _light_red_now(world, int(paths.cp_walk_light[cp]))
    return world, peds, cp


def test_pedestrian_waits_at_red_crosswalk(sim_config):
    world, peds, cp = _pedestrian_before_red_crosswalk(sim_config, jaywalk=0.0)
    for _ in range(10):
        world.step(PARK)
    assert peds.state[0] == WAIT and peds.cp[0] == cp
    start = peds.pos.copy()
    for _ in range(100):
        world.step(PARK)
    assert peds.state[0] == WAIT
    np.testing.assert_array_equal(peds.pos, start)


def test_jaywalker_crosses_on_red(sim_config):
    world, peds, cp = _pedestrian_before_red_crosswalk(sim_config, jaywalk=1.0)
    start = None
    for _ in range(10):
        world.step(PARK)
        start = peds.pos.copy() if start is None else start
    assert peds.state[0] == CROSS and peds.cp[0] == cp
    for _ in range(20):
        world.step(PARK)
    assert np.linalg.norm(peds.pos[0] - start[0]) > 1.0
