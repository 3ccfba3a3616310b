"""Steps/s of highway-env's highway-v0 on this machine, for docs/BENCHMARKS.md's comparison with
`carla-rl bench sim`. Run it with a venv that has highway-env (it needs pygame-ce, which conflicts with
our pygame, so not our .venv):

    python3 -m venv /tmp/hwvenv && /tmp/hwvenv/bin/pip install highway-env==1.12.1
    /tmp/hwvenv/bin/python scripts/bench_highway_env.py --vehicles 60 --seconds 5

One env.step() = one simulation tick (policy_frequency == simulation_frequency), like one tick of ours.
"""

import argparse
import json
import time

import gymnasium as gym
import highway_env  # noqa: F401  (registers the envs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vehicles", type=int, default=60)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--observation", default="Kinematics", choices=("Kinematics", "GrayscaleObservation"))
    args = parser.parse_args()
    observation = {"type": args.observation}
    if args.observation == "GrayscaleObservation":
        observation.update(observation_shape=(84, 84), stack_size=4, weights=[0.2989, 0.5870, 0.1140])
    env = gym.make("highway-v0", config={"vehicles_count": args.vehicles, "simulation_frequency": 20,
                                          "policy_frequency": 20, "duration": 10_000, "observation": observation,
                                          "offscreen_rendering": True})
    env.reset(seed=0)
    steps, start = 0, time.process_time()
    while time.process_time() - start < args.seconds:
        _, _, terminated, truncated, _ = env.step(1)  # IDLE
        steps += 1
        if terminated or truncated:
            env.reset()
    print(json.dumps({"env": "highway-v0", "vehicles": args.vehicles, "observation": args.observation,
                      "steps_per_cpu_s": round(steps / (time.process_time() - start), 1)}))


if __name__ == "__main__":
    main()
