"""CarlaWorld's orchestration against a fake server (tests/carla/fake_carla_server.py) built around a REAL
carla.Map: synchronous settings, spawning, sensors collected per frame, SensorFrame contents, EgoSituation
from the map, events, lockstep step ids, cleanup. (No CARLA server exists here; see docker/README.md.)"""

from __future__ import annotations

import math

import numpy as np
import pytest

carla = pytest.importorskip("carla", reason="the carla 0.9.16 client wheel is not installed")

from carla_rl.carla.carla_config import CarlaConfig, CameraConfig  # noqa: E402
from carla_rl.carla.carla_world import CarlaWorld  # noqa: E402
from carla_rl.carla.server_lifecycle import ServerLifecycle  # noqa: E402
from carla_rl.contract.scenario import ScenarioConfig  # noqa: E402
from carla_rl.contract.sensor_frame import VehicleControl  # noqa: E402

import fake_carla_server as fake  # noqa: E402
from xodr_maps import two_road_map  # noqa: E402


@pytest.fixture
def world_and_fake():
    fake.FakeClient.world = fake.FakeWorld(carla.Map("two_roads", two_road_map()), collision_at_x=None)
    cfg = CarlaConfig(camera=CameraConfig(width=16, height=12), settle_ticks=1, sensor_timeout_s=2.0,
                      town="Town99")
    lifecycle = ServerLifecycle(cfg, client_factory=fake.FakeClient, sleep=lambda s: None)
    scenario = ScenarioConfig(name="t", map_name="straight", route_length_m=60.0)
    world = CarlaWorld(cfg, scenario, seed=3, lifecycle=lifecycle)
    yield world, fake.FakeClient.world
    world.close()


def test_reset_spawns_ego_and_sensors_and_returns_the_first_frame(world_and_fake):
    world, server = world_and_fake
    frame = world.reset(evaluation=True, phase=2)
    assert server.settings.synchronous_mode and server.settings.fixed_delta_seconds == pytest.approx(0.05)
    assert world.lifecycle.client.tm.sync is True and world.lifecycle.client.tm.seed == 3
    types = sorted(a.type_id for a in server.actors.values())
    assert types.count("vehicle.tesla.model3") == 1
    assert {"sensor.camera.semantic_segmentation", "sensor.lidar.ray_cast", "sensor.other.radar",
            "sensor.other.collision", "sensor.other.lane_invasion"} <= set(types)
    camera = next(a for a in server.actors.values() if a.type_id == "sensor.camera.semantic_segmentation")
    assert camera.attributes["image_size_x"] == "16" and camera.transform.rotation.pitch == -90.0
    assert world.ego.attributes["role_name"] == "ego_vehicle"
    # first frame: after settle ticks, episode_step 0
    sit = frame.situation
    assert (sit.episode_id, sit.episode_step, sit.phase, sit.evaluation) == (1, 0, 2, True)
    assert frame.step_id == world.step_id == server.ticks
    assert frame.sim_time == pytest.approx(frame.step_id * 0.05)
    assert frame.camera.shape == (12, 16, 3) and frame.camera[0, 0].tolist() == [128, 64, 128]
    np.testing.assert_allclose(frame.lidar, [[1.0, -2.0, 0.0, 0.5]])          # y flipped
    np.testing.assert_allclose(frame.radar, [[25.0, 0.1, 0.0, -1.0]])          # late radar was awaited
    assert frame.route.shape[1] == 2 and frame.route_version == 1
    assert not sit.on_sidewalk and not sit.off_road
    assert sit.route_remaining_m == pytest.approx(world._tracker.length_m, abs=1e-3)
    assert 10.0 < sit.route_remaining_m < 62.5          # 60 m, or less at a dead end of the small map
    assert abs(sit.lateral_offset_m) < 0.05 and abs(sit.heading_error_rad) < 1e-3
    assert math.isinf(sit.nearest_actor_distance_m)


def test_steps_are_lockstep_and_count_events(world_and_fake):
    world, server = world_and_fake
    first = world.reset()
    server.collision_at_x = 0.3                          # metres from the spawn point
    frames = [world.step(VehicleControl(throttle=1.0)) for _ in range(3)]
    assert [f.step_id for f in frames] == [first.step_id + 1, first.step_id + 2, first.step_id + 3]
    assert [f.situation.episode_step for f in frames] == [1, 2, 3]
    applied = world.ego.controls[-1]
    assert isinstance(applied, carla.VehicleControl) and applied.throttle == pytest.approx(1.0)
    assert frames[0].situation.collision_events == 1 and frames[0].collisions[0].other_actor_id == 7
    assert frames[1].situation.collision_events == 0
    assert frames[-1].speed == pytest.approx(10.0, abs=1e-4)
    assert frames[-1].odometry.vx == pytest.approx(10.0, abs=1e-4)
    assert frames[-1].odometry.vy == pytest.approx(0.0, abs=1e-4)
    assert frames[-1].situation.route_progress_m == pytest.approx(1.5, abs=0.1)
    # invalid controls are counted and become a full brake
    world.step(VehicleControl(throttle=float("nan")))
    assert world.invalid_controls == 1 and world.ego.controls[-1].brake == 1.0


def test_reset_again_replaces_actors_and_close_cleans_up(world_and_fake):
    world, server = world_and_fake
    world.reset()
    first_ego = world.ego.id
    frame = world.reset(seed=11)
    assert world.ego.id != first_ego and first_ego not in server.actors
    assert frame.situation.episode_id == 2 and frame.route_version == 2
    assert sum(a.type_id.startswith("vehicle") for a in server.actors.values()) == 1
    world.close()
    assert not server.actors
    assert server.settings.synchronous_mode is False
