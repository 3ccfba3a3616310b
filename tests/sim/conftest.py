"""Shared fixtures of the simulator tests: the real config files."""

from __future__ import annotations

import pytest
from sim_helpers import CONFIG_DIR

from carla_rl.contract.scenario import load_phases
from carla_rl.sim.sim_config import SimConfig, load_sim_config


@pytest.fixture(scope="session")
def sim_config() -> SimConfig:
    return load_sim_config(CONFIG_DIR / "sim.yaml")


@pytest.fixture(scope="session")
def phases():
    return load_phases(CONFIG_DIR / "curriculum.yaml")
