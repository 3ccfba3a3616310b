"""Maps prepared up front: a phase change then builds nothing, and changes nothing a seed fixes."""

from __future__ import annotations

import pytest

import carla_rl.sim.world as world_module
from carla_rl.sim.world import World


def _episode(world, scenario, phase, seed=5, ticks=30):
    frames = [world.reset(seed=seed, scenario=scenario, phase=phase)]
    frames += [world.apply_action(tick % 3) for tick in range(ticks)]
    return frames


def test_prepared_maps_are_not_built_again_at_a_phase_change(sim_config, phases, monkeypatch):
    world = World(sim_config, phases[0].scenario, seed=0)
    world.prepare_maps(p.scenario.map_name for p in phases)
    assert world.map_name == phases[0].scenario.map_name        # still on the current map
    assert set(world._maps) == {p.scenario.map_name for p in phases}

    def no_build(*_args, **_kwargs):
        raise AssertionError("a map was built after prepare_maps")

    monkeypatch.setattr(world_module, "build_map", no_build)
    for phase in (3, 4, 6, 10, 1):
        _episode(world, phases[phase - 1].scenario, phase, ticks=2)
        assert world.map_name == phases[phase - 1].scenario.map_name


@pytest.mark.parametrize("phase", [4, 6])
def test_preparing_maps_changes_no_frame(sim_config, phases, phase):
    scenario = phases[phase - 1].scenario
    plain = World(sim_config, phases[0].scenario, seed=0)
    prepared = World(sim_config, phases[0].scenario, seed=0)
    prepared.prepare_maps(p.scenario.map_name for p in phases)
    for a, b in zip(_episode(plain, scenario, phase), _episode(prepared, scenario, phase)):
        assert a.camera.tobytes() == b.camera.tobytes() and a.lidar.tobytes() == b.lidar.tobytes()
        assert a.odometry == b.odometry and a.situation == b.situation
