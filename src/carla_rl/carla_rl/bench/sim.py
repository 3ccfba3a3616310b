"""Speed of the world core: ticks per CPU second of ``World.step`` with all sensors on, one process.

``python -m carla_rl.bench.sim --phases 1 10 --seconds 5`` prints one JSON line per phase.
The ego is driven by the autopilot (its time is measured apart, not counted in ``steps_per_s``);
episodes restart on collision, sidewalk, goal or the phase's time limit (resets not counted).
One untimed tick before the clock starts loads the compiled kernels (:mod:`carla_rl.sim.kernels`,
a one-time cost per process, ~30 ms from numba's on-disk cache); the timed run then starts from a
fresh reset with the same seed.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
from pathlib import Path

from carla_rl.contract.config import default_config_dir
from carla_rl.contract.scenario import load_phases
from carla_rl.sim.autopilot import Autopilot
from carla_rl.sim.sim_config import load_sim_config
from carla_rl.sim.world import World

SIM_CONFIG_FILE = "sim.yaml"
CURRICULUM_FILE = "curriculum.yaml"


def run_sim_benchmark(
    phase: int, seconds: float, config_dir: Path, seed: int = 0, policy: str = "autopilot"
) -> dict:
    """Step the world of ``phase`` for ``seconds`` of wall time; ``policy``: autopilot | coast."""
    config_dir = Path(config_dir)
    sim_config = load_sim_config(config_dir / SIM_CONFIG_FILE)
    phases = load_phases(config_dir / CURRICULUM_FILE)
    scenario = phases[phase - 1].scenario
    world = World(sim_config, scenario, seed=seed)
    world.reset(seed=seed, phase=phase)
    world.step(sim_config.action_control(4))  # warm-up: loads the compiled kernels (untimed)
    frame = world.reset(seed=seed, phase=phase)
    autopilot = Autopilot(world) if policy == "autopilot" else None
    coast = sim_config.action_control(4)
    step_time = policy_time = 0.0
    steps = episodes = 0
    # CPU time of this process: the figure for one core, robust to other processes on the machine.
    clock = time.process_time
    wall_start = time.perf_counter()
    while time.perf_counter() - wall_start < seconds:
        t0 = clock()
        control = autopilot(frame) if autopilot is not None else coast
        t1 = clock()
        frame = world.step(control)
        t2 = clock()
        policy_time += t1 - t0
        step_time += t2 - t1
        steps += 1
        sit = frame.situation
        if (
            sit.collision_events
            or sit.on_sidewalk
            or sit.goal_reached
            or sit.episode_step >= scenario.max_episode_steps
        ):
            frame = world.reset()
            episodes += 1
    wall = time.perf_counter() - wall_start
    return {
        "phase": phase,
        "map": scenario.map_name,
        "steps": steps,
        "steps_per_s": steps / max(step_time, 1e-9),
        "steps_per_s_with_policy": steps / max(step_time + policy_time, 1e-9),
        "steps_per_wall_s_with_policy": steps / max(wall, 1e-9),
        "episodes_finished": episodes,
        "num_vehicles": int(world.vehicles.n),
        "num_pedestrians": int(world.pedestrians.n),
        "camera": [sim_config.camera.height, sim_config.camera.width],
        "lidar_rays": sim_config.lidar.channels * sim_config.lidar.rays_per_channel,
        "radar_max_detections": sim_config.radar.max_detections,
        "policy": policy,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phases", type=int, nargs="+", default=list(range(1, 11)))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--config-dir", type=Path, default=None)
    parser.add_argument("--policy", choices=("autopilot", "coast"), default="autopilot")
    args = parser.parse_args(argv)
    config_dir = args.config_dir or default_config_dir()
    cv2.setNumThreads(1)  # one core: no OpenCV worker threads
    for phase in args.phases:
        print(
            json.dumps(run_sim_benchmark(phase, args.seconds, config_dir, policy=args.policy)),
            flush=True,
        )


if __name__ == "__main__":
    main()
