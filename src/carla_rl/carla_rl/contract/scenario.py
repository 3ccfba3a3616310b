"""Scenario and curriculum-phase configuration: one file, ``config/curriculum.yaml``, feeds both the
simulators (what world to build) and the curriculum manager (budgets, evaluation thresholds).

Layout (ROS 2 params file)::

    /**:
      ros__parameters:
        num_phases: 10
        phases:
          phase_1: {name: forward_only, map_name: straight, ...}
          ...
    curriculum_manager:
      ros__parameters: {...}        # CurriculumConfig (carla_rl.curriculum)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from carla_rl.contract.config import ConfigError, from_mapping, node_parameters, param

MAP_NAMES = ("straight", "curvy", "town", "parking")
NUM_ACTIONS = 6


@dataclass(frozen=True)
class ScenarioConfig:
    """The world of one phase (mirrors carla_rl_interfaces/ScenarioConfig)."""

    name: str = param("straight_road", "Short phase name")
    map_name: str = param("straight", "Map to build", choices=MAP_NAMES)
    num_vehicles: int = param(0, "NPC vehicles", low=0, high=200)
    num_pedestrians: int = param(0, "Pedestrians", low=0, high=200)
    jaywalk_probability: float = param(0.0, "Chance per pedestrian crossing to ignore the signal / crosswalk",
                                       low=0.0, high=1.0)
    traffic_lights: bool = param(False, "Signalised intersections are active")
    parking_goal: bool = param(False, "The goal is a parking bay (reverse manoeuvre allowed)")
    target_speed_mps: float = param(8.0, "Target cruise speed [m/s]", low=0.5, high=30.0)
    route_length_m: float = param(150.0, "Route length from start to goal [m]", low=10.0, high=5000.0)
    max_episode_steps: int = param(600, "Time limit in ticks (truncation)", low=10, high=100000)
    allowed_actions: list[int] = param(default_factory=list, description="Allowed action indices; empty = all",
                                       low=0, high=NUM_ACTIONS - 1)


@dataclass(frozen=True)
class PhaseThresholds:
    """Evaluation thresholds a phase must meet to be passed (the seed's defaults)."""

    goal_rate: float = param(0.6, "Minimum goal-completion rate", low=0.0, high=1.0)
    collision_free_rate: float = param(0.8, "Minimum collision-free rate", low=0.0, high=1.0)
    sidewalk_free_rate: float = param(0.9, "Minimum sidewalk-free rate", low=0.0, high=1.0)


@dataclass(frozen=True)
class PhaseConfig:
    """One curriculum phase: its scenario, its episode budget and its evaluation thresholds."""

    scenario: ScenarioConfig = param(default_factory=ScenarioConfig, description="World of the phase")
    episode_budget: int = param(100, "Training episodes before the phase is evaluated for completion",
                                low=1, high=10_000_000)
    eval_episodes: int = param(5, "Episodes per evaluation", low=1, high=10_000)
    thresholds: PhaseThresholds = param(default_factory=PhaseThresholds, description="Pass thresholds")


def load_phases(path: Path, tolerant: bool = False) -> list:
    """Read and validate all phases from ``curriculum.yaml``; phase i is ``result[i - 1]``.

    ``tolerant``: a broken phase does not fail the whole table; its entry is the ConfigError
    (naming file and key), so the curriculum manager can refuse to enter it and run the others.
    A broken table layout (num_phases, missing or extra phases) always raises.
    """
    params = node_parameters(path, "curriculum_manager")
    num = params.get("num_phases")
    phases = params.get("phases")
    if not isinstance(num, int) or isinstance(num, bool) or num < 1:
        raise ConfigError(f"{path}: num_phases: expected a positive integer, got {num!r}")
    if not isinstance(phases, dict):
        raise ConfigError(f"{path}: phases: expected a mapping phase_1 ... phase_{num}")
    expected = [f"phase_{i}" for i in range(1, num + 1)]
    unknown = sorted(set(phases) - set(expected))
    missing = [key for key in expected if key not in phases]
    if unknown:
        raise ConfigError(f"{path}: phases: unknown key(s) {', '.join(unknown)} (num_phases is {num})")
    if missing:
        raise ConfigError(f"{path}: phases: missing {', '.join(missing)}")
    out: list = []
    for key in expected:
        block = phases[key]
        try:
            if not isinstance(block, dict):
                raise ConfigError(f"phases.{key}: expected a mapping")
            out.append(from_mapping(PhaseConfig, block, f"phases.{key}"))
        except ConfigError as exc:
            if not tolerant:
                raise ConfigError(f"{path}: {exc}") from None
            out.append(ConfigError(f"{path}: {exc}"))
    return out
