"""Helpers of the simulator tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from carla_rl.contract.scenario import ScenarioConfig
from carla_rl.sim.sim_config import SimConfig
from carla_rl.sim.world import World

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def make_world(sim_config: SimConfig, seed: int = 0, **scenario_fields) -> World:
    """A world on a custom scenario (defaults: empty straight road)."""
    scenario = dataclasses.replace(ScenarioConfig(), **scenario_fields)
    world = World(sim_config, scenario, seed=seed)
    world.reset(seed=seed)
    return world
