"""Subprocess worker for the exact-resume test: ``python resume_worker.py MODE N CKPT OUT``.

MODE first:  fill replay, 2N updates straight, write weights to OUT; then a fresh agent: fill
             replay, N updates, save checkpoint (with replay) to CKPT.
MODE second: new agent, restore CKPT, N updates, write weights to OUT.
Each update is preceded by an epsilon-greedy ``act`` on the noisy net, so the acting RNG and the
noise are exercised too.
"""

import os
import sys
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src" / "carla_rl"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from carla_rl.learner.checkpoint import restore_checkpoint, save_checkpoint  # noqa: E402
from carla_rl.learner.dqn_agent import DQNAgent  # noqa: E402
from helpers import TINY_SPEC, tiny_config  # noqa: E402


def make_agent(noisy: bool) -> DQNAgent:
    cfg = tiny_config(noisy=noisy, target_update_interval=3)
    cfg.replay.capacity = 300
    return DQNAgent(TINY_SPEC, 4, cfg, seed=123)


def fill(agent: DQNAgent) -> None:
    rng = np.random.default_rng(5)
    for t in range(400):  # wraps the ring
        for env in range(2):
            start = t % 37 == 0
            agent.observe(env, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                          rng.random(3, dtype=np.float32), float(rng.normal()),
                          False, False, start or t == 0)
            agent.record_action(env, int(rng.integers(0, 4)))


def train(agent: DQNAgent, updates: int) -> None:
    probe = np.random.default_rng(9).integers(0, 256, (3, 2, 8, 8), dtype=np.uint8)
    for _ in range(updates):
        # epsilon draws use the acting RNG, noisy layers the torch RNG: both must resume
        agent.policy.act(probe, np.zeros((3, 3), np.float32), epsilon=0.5, noise=True,
                         action_mask=None)
        assert agent.update() is not None


def main() -> None:
    torch.set_num_threads(1)
    mode, n, ckpt, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    noisy = sys.argv[5] == "noisy"
    if mode == "first":
        straight = make_agent(noisy)
        fill(straight)
        train(straight, 2 * n)
        write_result(straight, out)
        agent = make_agent(noisy)
        fill(agent)
        train(agent, n)
        save_checkpoint(agent, ckpt, include_replay=True, chunk_slots=128)
    else:
        agent = make_agent(noisy)
        restore_checkpoint(agent, ckpt)
        train(agent, n)
        write_result(agent, out)


def write_result(agent: DQNAgent, out: str) -> None:
    final_actions = agent.policy.act(np.zeros((16, 2, 8, 8), np.uint8),
                                     np.zeros((16, 3), np.float32), epsilon=0.5, noise=True,
                                     action_mask=None)  # depends on the acting RNG
    torch.save({"online": agent.online.state_dict(), "target": agent.target.state_dict(),
                "optimizer": agent.algorithm.optimizer.state_dict()["state"],
                "actions": torch.from_numpy(final_actions.actions)}, out)

if __name__ == "__main__":
    main()
