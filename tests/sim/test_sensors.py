"""Sensor shapes, dtypes, palette validity; step ids, routes and views."""

from __future__ import annotations

import math

import numpy as np

from carla_rl.contract.semantic_palette import PALETTE, SemanticTag, colours_to_tags
from carla_rl.sim.world import KIND_EGO, World


def test_colour_lookup_equals_palette_search():
    rng = np.random.default_rng(5)
    tags = rng.integers(0, len(PALETTE), (84, 84)).astype(np.uint8)
    image = PALETTE[tags]
    image[rng.random((84, 84)) < 0.05] = (1, 2, 3)                 # not a palette colour
    looked_up = colours_to_tags(image)                              # table path
    searched = colours_to_tags(image, unknown=255)                  # binary-search path
    assert np.array_equal(np.where(searched == 255, SemanticTag.UNLABELED, searched), looked_up)
    assert np.array_equal(looked_up[searched != 255], tags[searched != 255])
    assert (searched == 255).sum() > 0


def test_frame_contents_phase_10(sim_config, phases):
    world = World(sim_config, phases[9].scenario, seed=3)
    frame = world.reset(seed=3, phase=10)
    for _ in range(5):
        frame = world.apply_action(0)
    cam = sim_config.camera
    assert frame.camera.shape == (cam.height, cam.width, 3) and frame.camera.dtype == np.uint8
    keys = frame.camera.reshape(-1, 3)
    palette = {tuple(c) for c in PALETTE.tolist()}
    assert {tuple(c) for c in np.unique(keys, axis=0).tolist()} <= palette
    tags = colours_to_tags(frame.camera)
    row, col = int(cam.ego_row_fraction * cam.height), int(cam.ego_col_fraction * cam.width)
    assert tags[row, col] == SemanticTag.CAR  # the ego itself
    assert frame.lidar.dtype == np.float32 and frame.lidar.ndim == 2 and frame.lidar.shape[1] == 4
    assert len(frame.lidar) > 0
    ranges = np.hypot(frame.lidar[:, 0], frame.lidar[:, 1])
    assert np.all(ranges <= sim_config.lidar.range_m + 0.5)
    assert np.all((frame.lidar[:, 3] > 0) & (frame.lidar[:, 3] <= 1))
    assert frame.radar.dtype == np.float32 and frame.radar.shape[1] == 4
    assert len(frame.radar) <= sim_config.radar.max_detections
    if len(frame.radar):
        assert np.all(
            np.abs(frame.radar[:, 1]) <= math.radians(sim_config.radar.horizontal_fov_deg) / 2
        )
    assert frame.route.dtype == np.float32 and frame.route.shape[1] == 2
    assert frame.sim_time == frame.step_id * sim_config.fixed_delta_seconds
    assert frame.situation.phase == 10 and frame.situation.episode_step == 5


def test_step_id_counts_across_episodes_and_route_version_changes(sim_config, phases):
    world = World(sim_config, phases[3].scenario, seed=0)
    first = world.reset()
    ids = [first.step_id]
    for _ in range(3):
        ids.append(world.apply_action(4).step_id)
    second = world.reset()
    assert second.step_id == ids[-1] + 1
    assert second.situation.episode_id == first.situation.episode_id + 1
    assert second.situation.episode_step == 0
    assert second.route_version != first.route_version
    assert np.all(np.diff(ids) == 1)


def test_route_length_matches_scenario(sim_config, phases):
    for index in (0, 2, 3, 5):
        scenario = phases[index].scenario
        world = World(sim_config, scenario, seed=1)
        frame = world.reset(seed=1)
        length = float(np.sum(np.linalg.norm(np.diff(frame.route, axis=0), axis=1)))
        assert abs(length - scenario.route_length_m) < 0.1 * scenario.route_length_m + 3.0


def test_views_for_markers_and_humans(sim_config, phases):
    world = World(sim_config, phases[9].scenario, seed=0)
    world.reset(seed=0)
    snap = world.actors_snapshot()
    n = 1 + phases[9].scenario.num_vehicles + phases[9].scenario.num_pedestrians
    assert snap.positions.shape == (n, 2) and snap.sizes.shape == (n, 2)
    assert snap.kinds[0] == KIND_EGO and len(set(snap.ids.tolist())) == n
    net = world.road_network
    assert len(net.lanes) > 0 and len(net.markings) > 0 and len(net.crosswalks) > 0
    assert world.light_states.shape == (net.num_lights,)
    image = world.render_topdown(256)
    assert image.dtype == np.uint8 and image.shape[2] == 3 and max(image.shape[:2]) == 256


def test_lidar_free_space_skipping_is_exact(sim_config, phases):
    """The LiDAR rays skip free space (distance field) and test actors only near their boxes;
    the first hits equal a plain step-by-step march over every sample."""
    from carla_rl.sim import kernels, sensors

    world = World(sim_config, phases[9].scenario, seed=4)
    world.reset(seed=4, phase=10)
    lidar = world.lidar
    assert lidar.flat_lut is not None  # the shipped LiDAR is flat: skipping is on
    calls = []
    original = kernels.lidar_first_hits

    def both(*args):
        count = original(*args)
        fast = args[20].copy()
        plain = list(args)
        plain[12] = np.array([0, 0, lidar.n, lidar.n])  # every step is tested for actors
        plain[18] = False  # no skipping: per-sample height test (== the flat LUT at 0 deg)
        plain[20] = np.empty_like(fast)
        assert original(*plain) == count
        calls.append(np.array_equal(plain[20], fast))
        return count

    try:
        sensors.kernels.lidar_first_hits = both
        for _ in range(40):
            world.apply_action(0)
    finally:
        sensors.kernels.lidar_first_hits = original
    assert len(calls) == 40 and all(calls)
