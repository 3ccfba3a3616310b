import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_rl.learner.agent_config import ObservationSpec
from carla_rl.learner.checkpoint import (CheckpointError, load_checkpoint, read_checkpoint,
                                         restore_checkpoint, save_checkpoint)
from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, tiny_config

WORKER = Path(__file__).resolve().parent / "resume_worker.py"
UPDATES = 12


def _worker(*args: str) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, str(WORKER), *args], check=True, env=env, timeout=120)


def test_exact_resume_in_new_process_is_bitwise(tmp_path):
    variant = "noisy"
    ckpt, straight, resumed = tmp_path / "agent.ckpt", tmp_path / "a.pt", tmp_path / "b.pt"
    _worker("first", str(UPDATES // 2), str(ckpt), str(straight), variant)
    _worker("second", str(UPDATES // 2), str(ckpt), str(resumed), variant)
    a = torch.load(straight, weights_only=True)
    b = torch.load(resumed, weights_only=True)
    for part in ("online", "target"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)
    for idx, state in a["optimizer"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer"][idx][key]), (idx, key)
    assert torch.equal(a["actions"], b["actions"])


def _trained_agent(seed=0, spec=TINY_SPEC, actions=3) -> DQNAgent:
    agent = DQNAgent(spec, actions, tiny_config(learning_starts=20), seed=seed)
    rng = np.random.default_rng(seed)
    for t in range(60):
        agent.observe(0, rng.integers(0, 256, (spec.height, spec.width), dtype=np.uint8),
                      rng.random(spec.vector_size, dtype=np.float32), 1.0, False, False, t == 0)
        agent.record_action(0, 1)
    agent.update()
    return agent


def test_round_trip_builds_agent_from_stored_config(tmp_path):
    agent = _trained_agent()
    path = save_checkpoint(agent, tmp_path / "c.ckpt", include_replay=True, chunk_slots=500)
    clone = load_checkpoint(path)
    assert clone.updates == agent.updates and clone.replay.total == agent.replay.total
    for key, value in agent.online.state_dict().items():
        assert torch.equal(value, clone.online.state_dict()[key])
    np.testing.assert_array_equal(clone.replay.frames, agent.replay.frames)
    # saving again replaces the replay directory, never leaves temp files
    save_checkpoint(agent, path, include_replay=True, chunk_slots=500)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2 and not any(n.endswith(".tmp") for n in names)


def _bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_truncated_corrupted_foreign_raise_and_keep_good_file(tmp_path):
    agent = _trained_agent()
    good = save_checkpoint(agent, tmp_path / "good.ckpt")
    good_bytes = _bytes(good)
    data = bytearray(good_bytes)

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        restore_checkpoint(agent, truncated)
    truncated.write_bytes(bytes(data[:10]))
    with pytest.raises(CheckpointError, match="truncated"):
        read_checkpoint(truncated)

    corrupted = tmp_path / "corrupted.ckpt"
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    corrupted.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="corrupted"):
        restore_checkpoint(agent, corrupted)

    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"hello world, not a checkpoint at all" * 4)
    with pytest.raises(CheckpointError, match="not a carla_rl checkpoint"):
        restore_checkpoint(agent, garbage)
    with pytest.raises(CheckpointError, match="not found"):
        restore_checkpoint(agent, tmp_path / "missing.ckpt")

    other = _trained_agent(spec=ObservationSpec(2, 8, 8, 5), actions=3)
    foreign = save_checkpoint(other, tmp_path / "foreign.ckpt")
    before = {k: v.clone() for k, v in agent.online.state_dict().items()}
    with pytest.raises(CheckpointError, match="foreign architecture"):
        restore_checkpoint(agent, foreign)
    for key, value in agent.online.state_dict().items():  # agent untouched
        assert torch.equal(value, before[key])
    assert _bytes(good) == good_bytes
    restore_checkpoint(agent, good)  # the good one still loads


def test_older_format_is_refused_with_the_reason(tmp_path, monkeypatch):
    import carla_rl.learner.checkpoint as checkpoint

    agent = _trained_agent()
    monkeypatch.setattr(checkpoint, "FORMAT_VERSION", 2)
    old = save_checkpoint(agent, tmp_path / "old.ckpt")
    monkeypatch.undo()
    before = {k: v.clone() for k, v in agent.online.state_dict().items()}
    with pytest.raises(CheckpointError, match="unsupported checkpoint format 2 .*reads format 3"):
        restore_checkpoint(agent, old)
    for key, value in agent.online.state_dict().items():  # agent untouched
        assert torch.equal(value, before[key])


def test_failed_save_leaves_previous_checkpoint_intact(tmp_path, monkeypatch):
    agent = _trained_agent()
    good = save_checkpoint(agent, tmp_path / "agent.ckpt", include_replay=True)
    good_bytes = _bytes(good)
    replay_dirs = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    agent.update()

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(agent, good, include_replay=True)
    monkeypatch.undo()
    assert _bytes(good) == good_bytes
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == replay_dirs
    assert not [p for p in tmp_path.rglob("*.tmp")]
    restore_checkpoint(agent, good)


def test_corrupted_replay_chunk_is_detected(tmp_path):
    agent = _trained_agent()
    path = save_checkpoint(agent, tmp_path / "agent.ckpt", include_replay=True,
                           chunk_slots=500)
    chunk = next(tmp_path.glob("agent.ckpt.replay-*/chunk_00000.pt"))  # 60 of its 500 slots written
    data = bytearray(chunk.read_bytes())
    data[-5] ^= 0x01
    chunk.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="chunk_00000.pt: corrupted"):
        restore_checkpoint(agent, path)


def test_a_checkpoint_naming_a_removed_fast_path_switch_still_loads(tmp_path):
    """Configs stored before a switch was removed (RETIRED_FIELDS) load; an unknown key still fails."""
    from carla_rl.learner.checkpoint import agent_state, write_file

    agent = DQNAgent(TINY_SPEC, 3, tiny_config(), seed=0)
    state = agent_state(agent)
    state["config"].update(merge_online_passes=True, cudnn_benchmark=False)
    write_file(tmp_path / "old.ckpt", state)
    assert load_checkpoint(tmp_path / "old.ckpt").config == agent.config
    state["config"]["no_such_switch"] = True
    write_file(tmp_path / "bad.ckpt", state)
    with pytest.raises(CheckpointError, match="no_such_switch"):
        load_checkpoint(tmp_path / "bad.ckpt")
