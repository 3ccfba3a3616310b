"""Policy files: the weights-only form a trained agent is shipped in."""

import numpy as np
import pytest
import torch

from carla_rl.learner.checkpoint import (POLICY_KIND, CheckpointError, export_policy, load_checkpoint,
                                         read_file, restore_checkpoint, save_checkpoint, save_policy,
                                         verify_checkpoint, write_file)
from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, tiny_config
from test_checkpoint import _trained_agent


def _greedy_q(agent: DQNAgent, seed: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    frames = torch.from_numpy(rng.integers(0, 256, (5, TINY_SPEC.frame_stack, TINY_SPEC.height, TINY_SPEC.width),
                                           dtype=np.uint8))
    vector = torch.from_numpy(rng.random((5, TINY_SPEC.vector_size), dtype=np.float32))
    agent.online.eval()
    with torch.no_grad():
        return agent.online.q_values(frames, vector)


def test_exported_policy_acts_like_the_checkpoint_and_is_weights_only(tmp_path):
    agent = _trained_agent()
    checkpoint = save_checkpoint(agent, tmp_path / "final.pt", include_replay=True, chunk_slots=500)
    written = export_policy(checkpoint, tmp_path / "policy.pt")
    state = read_file(tmp_path / "policy.pt")
    assert state["kind"] == POLICY_KIND
    assert set(state) == {"format", "kind", "fingerprint", "spec", "action_size", "config", "online", "counters"}
    assert written["bytes"] < (tmp_path / "final.pt").stat().st_size
    assert written["counters"]["updates"] == agent.updates
    clone = load_checkpoint(tmp_path / "policy.pt")
    assert torch.equal(_greedy_q(clone), _greedy_q(agent))
    for key, value in agent.online.state_dict().items():  # the target starts at the shipped weights
        assert torch.equal(clone.target.state_dict()[key], value)
    assert clone.updates == 0 and len(clone.replay) == 0  # a fresh learner around the weights
    assert verify_checkpoint(tmp_path / "policy.pt") is False


def test_save_policy_equals_export_and_restores_into_a_running_agent(tmp_path):
    agent = _trained_agent()
    save_policy(agent, tmp_path / "direct.pt")
    other = DQNAgent(TINY_SPEC, 3, tiny_config(learning_starts=20), seed=9)
    assert not torch.equal(_greedy_q(other), _greedy_q(agent))
    restore_checkpoint(other, tmp_path / "direct.pt")
    assert torch.equal(_greedy_q(other), _greedy_q(agent))


def test_foreign_and_poisoned_policy_files_are_refused(tmp_path):
    save_policy(_trained_agent(), tmp_path / "policy.pt")
    foreign = DQNAgent(TINY_SPEC, 5, tiny_config(learning_starts=20), seed=0)  # 5 actions, not 3
    with pytest.raises(CheckpointError, match="foreign architecture"):
        restore_checkpoint(foreign, tmp_path / "policy.pt")
    state = read_file(tmp_path / "policy.pt")
    key = next(iter(k for k, v in state["online"].items() if v.is_floating_point() and v.numel()))
    state["online"][key] = state["online"][key].clone().fill_(float("nan"))
    write_file(tmp_path / "nan.pt", state)
    with pytest.raises(CheckpointError, match="not finite"):
        export_policy(tmp_path / "nan.pt", tmp_path / "out.pt")
    with pytest.raises(CheckpointError, match="not finite"):
        verify_checkpoint(tmp_path / "nan.pt")
    write_file(tmp_path / "junk.pt", {"hello": 1})
    with pytest.raises(CheckpointError, match="not an agent checkpoint"):
        export_policy(tmp_path / "junk.pt", tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()


def test_a_checkpoint_carried_without_its_replay_folder_resumes_the_rest(tmp_path):
    import shutil

    from carla_rl.learner.checkpoint import read_checkpoint

    agent = _trained_agent()
    path = save_checkpoint(agent, tmp_path / "final.pt", include_replay=True, chunk_slots=500)
    [folder] = list(tmp_path.glob("final.pt.replay-*"))
    shutil.rmtree(folder)  # the main file alone, as copied to another machine
    other = DQNAgent(TINY_SPEC, 3, tiny_config(learning_starts=20), seed=9)
    note = restore_checkpoint(other, path)
    assert "replay folder" in note and "empty replay" in note
    assert other.updates == agent.updates and other.env_steps == agent.env_steps and len(other.replay) == 0
    assert torch.equal(_greedy_q(other), _greedy_q(agent))
    # a folder that is there but misses a chunk is corruption, not a carried checkpoint
    save_checkpoint(agent, path, include_replay=True, chunk_slots=500)
    [folder] = list(tmp_path.glob("final.pt.replay-*"))
    next(p for p in folder.iterdir() if p.name != "empty.pt").unlink()
    with pytest.raises(CheckpointError):
        read_checkpoint(path)
