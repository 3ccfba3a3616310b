"""Which checkpoint a restarted policy resumes from (supervisor.latest_checkpoint, no processes): the
newest valid one that holds a replay; a corrupt, truncated, NaN-poisoned or replay-less newer one is
skipped with a line saying why."""

import os

import numpy as np
import pytest
import torch

from carla_rl.learner.agent_config import AgentConfig, NetworkConfig, ObservationSpec
from carla_rl.learner.checkpoint import agent_state, save_checkpoint, write_file
from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.graph.supervisor import latest_checkpoint


def tiny_agent() -> DQNAgent:
    cfg = AgentConfig()
    cfg.network = NetworkConfig(conv_channels=[4], conv_kernels=[3], conv_strides=[2], vector_hidden=[8],
                                hidden_size=16)
    cfg.replay.capacity = 64
    cfg.n_atoms = 5
    agent = DQNAgent(ObservationSpec(frame_stack=2, height=8, width=8, vector_size=2), 6, cfg, seed=1)
    for t in range(10):
        agent.observe(0, np.zeros((8, 8), np.uint8), np.zeros(2, np.float32), 1.0, False, False, t == 0)
        agent.record_action(0, 1)
    return agent


@pytest.fixture
def checkpoints(tmp_path):
    """episode_1 (replay) older than episode_2 (replay), mtimes one second apart."""
    agent = tiny_agent()
    directory = tmp_path / "checkpoints"
    paths = [save_checkpoint(agent, directory / f"episode_{i}.pt", include_replay=True, chunk_slots=16)
             for i in (1, 2)]
    for i, path in enumerate(paths):
        os.utime(path, (1000.0 + i, 1000.0 + i))
    return tmp_path, paths, agent


def newer(path, than):
    os.utime(path, (than.stat().st_mtime + 1, than.stat().st_mtime + 1))


def test_the_newest_valid_checkpoint_is_chosen(checkpoints):
    save_dir, (first, second), _ = checkpoints
    notes = []
    assert latest_checkpoint(save_dir, notes.append) == str(second) and notes == []


@pytest.mark.parametrize("damage", ["flipped_byte", "truncated", "garbage", "nan_weights", "missing_chunk"])
def test_a_damaged_newest_checkpoint_falls_back_to_the_previous_one(checkpoints, damage):
    save_dir, (first, second), agent = checkpoints
    data = second.read_bytes()
    if damage == "flipped_byte":
        second.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    elif damage == "truncated":
        second.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        second.write_bytes(b"not a checkpoint at all")
    elif damage == "nan_weights":
        state = agent_state(agent)
        state["online"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                           for k, v in state["online"].items()}
        write_file(second, state)
    else:
        next(next(save_dir.glob("checkpoints/episode_2.pt.replay-*")).glob("chunk_*")).unlink()
    newer(second, first)
    notes = []
    assert latest_checkpoint(save_dir, notes.append) == str(first)
    assert len(notes) == 1 and notes[0].startswith(f"skipping checkpoint {second}: ")
    assert notes[0].endswith("; trying the previous one")


def test_a_newer_checkpoint_without_replay_yields_to_one_with_replay(checkpoints):
    save_dir, (first, second), agent = checkpoints
    best = save_checkpoint(agent, save_dir / "checkpoints" / "best_phase_2.pt", include_replay=False)
    newer(best, second)
    assert latest_checkpoint(save_dir) == str(second)
    for path in (first, second):
        path.unlink()
    assert latest_checkpoint(save_dir) == str(best)  # none holds a replay: the newest valid one


def test_nothing_valid_means_a_fresh_start(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "episode_1.pt").write_bytes(b"")
    notes = []
    assert latest_checkpoint(tmp_path, notes.append) == "" and len(notes) == 1
    assert latest_checkpoint(tmp_path / "elsewhere") == ""
