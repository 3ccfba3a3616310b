"""What a periodic checkpoint with replay costs on this machine: write time and bytes of a full
replay write (what every periodic checkpoint with replay wrote before writes were incremental) and of
an incremental one after one checkpoint interval of new transitions.

    python -m carla_rl.bench.checkpoint [--capacity N] [--interval-steps K] [--json]

Frames are the preprocessor's observation shape (config/preprocess.yaml) filled with varied bytes, the
agent is config/agent.yaml's; files go to a temporary folder that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from carla_rl.contract.config import default_config_dir
from carla_rl.learner.agent_config import ObservationSpec, load_agent_config
from carla_rl.learner.checkpoint import REPLAY_CHUNK_SLOTS, read_checkpoint, save_checkpoint
from carla_rl.learner.dqn_agent import DQNAgent

DEFAULT_INTERVAL_STEPS = 10_000  # new transitions between two checkpoints (50 episodes of ~200 steps)
DISTINCT_FRAMES = 64  # frames cycled through the ring (random bytes: nothing to gain from repetition)


def observation_spec(config_dir: Path) -> ObservationSpec:
    """The observation the preprocessor of ``config_dir`` builds (frames and vector features)."""
    from carla_rl.contract.config import load_section
    from carla_rl.preprocess.config import PreprocessConfig
    from carla_rl.preprocess.observation import ObservationBuilder

    builder = ObservationBuilder(load_section(config_dir / "preprocess.yaml", "sensor_preprocessor",
                                              PreprocessConfig))
    stack, height, width = builder.frame_shape
    return ObservationSpec(stack, height, width, builder.vector_size)


def fill(agent: DQNAgent, steps: int, rng: np.random.Generator, episode_steps: int = 200) -> None:
    spec = agent.spec
    frames = rng.integers(0, 256, (DISTINCT_FRAMES, spec.height, spec.width), dtype=np.uint8)
    for t in range(steps):
        start = t % episode_steps == 0
        agent.observe(0, frames[t % DISTINCT_FRAMES], rng.random(spec.vector_size, dtype=np.float32),
                      float(rng.normal()), False, False, start)
        agent.record_action(0, int(rng.integers(agent.action_size)))


def timed_save(agent: DQNAgent, path: Path, chunk_slots: int) -> dict:
    started = time.perf_counter()
    save_checkpoint(agent, path, include_replay=True, chunk_slots=chunk_slots)
    seconds = time.perf_counter() - started
    write = agent.last_replay_write
    return {"seconds": round(seconds, 3), "replay_mb_written": round(write.bytes_written / 1e6, 1),
            "chunks_written": write.chunks_written, "chunks_linked": write.chunks_linked,
            "chunks_empty": write.chunks_empty, "main_file_mb": round(path.stat().st_size / 1e6, 2)}


def run(capacity: int, interval_steps: int, chunk_slots: int, config_dir: Path) -> dict:
    config = load_agent_config(config_dir / "agent.yaml")
    config.replay.capacity = capacity
    spec = observation_spec(config_dir)
    agent = DQNAgent(spec, 6, config, seed=0)
    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp(prefix="carla_rl_ckpt_bench_"))
    try:
        fill(agent, interval_steps, rng)
        first = timed_save(agent, folder / "episode_0000050.pt", chunk_slots)  # a fresh run's first one
        fill(agent, capacity, rng)  # the ring full and gone round
        agent.replay_snapshot = None  # as every write was before: all chunks
        full = timed_save(agent, folder / "full.pt", chunk_slots)
        fill(agent, interval_steps, rng)
        incremental = timed_save(agent, folder / "episode_0000100.pt", chunk_slots)
        started = time.perf_counter()
        read_checkpoint(folder / "episode_0000100.pt")
        load_s = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"capacity": capacity, "interval_steps": interval_steps, "chunk_slots": chunk_slots,
            "observation": [spec.frame_stack, spec.height, spec.width, spec.vector_size],
            "replay_mb_in_memory": round(agent.replay.nbytes / 1e6, 1),
            "first_checkpoint_of_a_run": first, "full_replay_write": full,
            "incremental_after_one_interval": incremental, "read_back_s": round(load_s, 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--capacity", type=int, default=100_000)
    parser.add_argument("--interval-steps", type=int, default=DEFAULT_INTERVAL_STEPS)
    parser.add_argument("--chunk-slots", type=int, default=REPLAY_CHUNK_SLOTS)
    parser.add_argument("--config-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = run(args.capacity, args.interval_steps, args.chunk_slots, args.config_dir or default_config_dir())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
