"""Goal / collision-free / sidewalk-free rates of the autopilot and of a uniformly random policy.

``python -m carla_rl.sim.autopilot_eval --seeds 20`` prints one JSON line per (phase, policy) and
whether it meets the phase's thresholds from ``config/curriculum.yaml``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from carla_rl.contract.config import default_config_dir
from carla_rl.contract.scenario import load_phases
from carla_rl.sim.autopilot import Autopilot
from carla_rl.sim.episode_runner import RandomPolicy, Rates, evaluate
from carla_rl.sim.sim_config import SimConfig, load_sim_config
from carla_rl.sim.world import World


def evaluate_phase(
    sim_config: SimConfig, phases, phase: int, policy: str, seeds, sensors: bool = False
) -> Rates:
    """Rates of ``policy`` (autopilot | random) on ``phase``; sensors off by default (the world
    evolves the same either way, the sensors have their own random stream)."""
    scenario = phases[phase - 1].scenario
    world = World(sim_config, scenario, seed=0)
    world.phase = phase
    world.sensors_enabled = sensors
    if policy == "autopilot":

        def make(w, seed):
            return Autopilot(w)

    else:

        def make(w, seed):
            return RandomPolicy(scenario.allowed_actions, seed=seed)

    rates, _ = evaluate(world, make, seeds, scenario.max_episode_steps)
    return rates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--policies", nargs="+", default=["autopilot", "random"])
    parser.add_argument("--config-dir", type=Path, default=None)
    parser.add_argument(
        "--with-sensors", action="store_true", help="render camera, lidar, radar too"
    )
    args = parser.parse_args(argv)
    config_dir = args.config_dir or default_config_dir()
    sim_config = load_sim_config(config_dir / "sim.yaml")
    phases = load_phases(config_dir / "curriculum.yaml")
    for phase in args.phases:
        th = phases[phase - 1].thresholds
        for policy in args.policies:
            rates = evaluate_phase(
                sim_config, phases, phase, policy, range(args.seeds), args.with_sensors
            )
            passes = rates.passes(th.goal_rate, th.collision_free_rate, th.sidewalk_free_rate)
            print(
                json.dumps({"phase": phase, "policy": policy, **vars(rates), "passes": passes}),
                flush=True,
            )


if __name__ == "__main__":
    main()
