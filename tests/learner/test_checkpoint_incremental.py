"""Replay checkpoints are written incrementally: a chunk unchanged since the agent's last replay
checkpoint (or the one it was restored from) is a hard link to that file, only changed chunks are
written, and every checkpoint reads back as exactly the replay it was taken from, whatever the ring
did in between (episodes across envs, dropped actions, non-finite input, wrap-around, priorities)."""

import numpy as np
import pytest

from carla_rl.learner.checkpoint import (read_checkpoint, remove_checkpoint, remove_orphan_replays,
                                         restore_checkpoint, save_checkpoint, verify_checkpoint)
from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, tiny_config

CAPACITY = 400
CHUNK = 50  # 8 chunks


def make_agent(seed=0) -> DQNAgent:
    cfg = tiny_config(learning_starts=20)
    cfg.replay.capacity = CAPACITY
    return DQNAgent(TINY_SPEC, 3, cfg, seed=seed)


class Streams:
    """Random ticks of a few envs: episodes of random length, a rare abandoned episode (an action
    without outcome), a rare NaN reward, updates that change priorities."""

    def __init__(self, agent: DQNAgent, seed: int = 0, envs: int = 3) -> None:
        self.agent, self.rng = agent, np.random.default_rng(seed)
        self.running = [False] * envs
        self.share = np.array([0.6, 0.38, 0.02][:envs]) / np.sum([0.6, 0.38, 0.02][:envs])

    def ticks(self, n: int) -> None:
        agent, rng = self.agent, self.rng
        for _ in range(n):
            env = int(rng.choice(len(self.running), p=self.share))  # one env ticks rarely: its open
            # transition gets its outcome long after, in an older chunk than the newest slots
            start = not self.running[env] or rng.random() < 0.03
            reward = float("nan") if rng.random() < 0.01 else float(rng.normal())
            done = not start and rng.random() < 0.05
            agent.observe(env, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                          rng.random(3, dtype=np.float32), reward, done, False, start)
            self.running[env] = not done
            if not done:
                agent.record_action(env, int(rng.integers(3)))
            if agent.replay.can_sample(16) and rng.random() < 0.05:
                agent.update()


def assert_same_replay(path, agent: DQNAgent) -> None:
    stored = read_checkpoint(path)["replay"]
    live = agent.replay.state_dict()
    for key, array in live["arrays"].items():
        np.testing.assert_array_equal(stored["arrays"][key].numpy(), array, err_msg=key)
    np.testing.assert_array_equal(stored["tree"].numpy(), live["tree"])
    np.testing.assert_array_equal(stored["envs"].numpy(), live["envs"])
    assert (stored["total"], stored["completed"]) == (live["total"], live["completed"])


def files_of(path):
    folder = next(path.parent.glob(f"{path.name}.replay-*"))
    return {f.name: f for f in folder.iterdir()}


def test_a_second_checkpoint_writes_only_the_changed_chunks(tmp_path):
    agent = make_agent()
    streams = Streams(agent)
    streams.ticks(120)
    first = save_checkpoint(agent, tmp_path / "episode_1.pt", include_replay=True, chunk_slots=CHUNK)
    write = agent.last_replay_write  # chunks 0-2 hold slots 0..119, 3-7 were never written: one file
    assert (write.chunks_written, write.chunks_linked, write.chunks_empty) == (3 + 1, 0, 5)
    streams.ticks(30)  # slots 120..149 and the envs' open transitions: chunk 2, maybe chunk 1 or 0
    second = save_checkpoint(agent, tmp_path / "episode_2.pt", include_replay=True, chunk_slots=CHUNK)
    write = agent.last_replay_write
    assert 1 <= write.chunks_written <= 3 and write.chunks_written + write.chunks_linked == 3 + 1
    assert write.chunks_empty == 5
    assert_same_replay(second, agent)
    a, b = files_of(first), files_of(second)
    shared = [n for n in b if n in a and a[n].stat().st_ino == b[n].stat().st_ino]
    assert len(shared) == write.chunks_linked and "empty.pt" in shared  # hard links, no copy
    remove_checkpoint(first)  # the older checkpoint and its folder go; the newer one keeps its chunks
    assert not first.exists() and not list(tmp_path.glob("episode_1.pt.replay-*"))
    verify_checkpoint(second)
    assert_same_replay(second, agent)


def test_every_checkpoint_reads_back_as_the_replay_it_was_taken_from(tmp_path):
    agent = make_agent(seed=1)
    streams = Streams(agent, seed=1)
    for i, n in enumerate([90, 7, 0, 61, 35, 180, 500, 12, 3]):  # 500: the ring goes round
        streams.ticks(n)
        path = save_checkpoint(agent, tmp_path / f"episode_{i}.pt", include_replay=True, chunk_slots=CHUNK)
        assert_same_replay(path, agent)
        if n >= CAPACITY:
            assert agent.last_replay_write.chunks_linked == 0
        if i >= 2:
            remove_checkpoint(tmp_path / f"episode_{i - 2}.pt")
    assert agent.replay.non_finite_dropped > 0 and agent.updates > 0


def test_the_outcome_of_an_old_open_transition_is_written(tmp_path):
    agent = make_agent()
    frame, vector = np.zeros((8, 8), np.uint8), np.zeros(3, np.float32)
    agent.observe(1, frame, vector, 0.0, False, False, True)  # env 1: slot 0, then idle
    agent.record_action(1, 2)
    for t in range(120):  # env 0 fills chunks 0..2
        agent.observe(0, frame, vector, 0.0, False, False, t == 0)
        agent.record_action(0, 0)
    save_checkpoint(agent, tmp_path / "a.pt", include_replay=True, chunk_slots=CHUNK)
    agent.observe(1, frame, vector, 5.0, True, False, False)  # its outcome lands in slot 0 (chunk 0)
    path = save_checkpoint(agent, tmp_path / "b.pt", include_replay=True, chunk_slots=CHUNK)
    assert agent.last_replay_write.chunks_written == 2  # chunk 0 (the outcome) and chunk 2 (the new slot)
    assert read_checkpoint(path)["replay"]["arrays"]["rewards"][0] == 5.0
    assert_same_replay(path, agent)


def test_a_restored_agent_links_to_the_checkpoint_it_came_from(tmp_path):
    agent = make_agent(seed=2)
    streams = Streams(agent, seed=2)
    streams.ticks(200)
    saved = save_checkpoint(agent, tmp_path / "episode_1.pt", include_replay=True, chunk_slots=CHUNK)
    resumed = make_agent(seed=3)
    restore_checkpoint(resumed, saved)
    Streams(resumed, seed=4).ticks(20)
    again = save_checkpoint(resumed, tmp_path / "episode_2.pt", include_replay=True, chunk_slots=CHUNK)
    write = resumed.last_replay_write  # the 20 new slots touch one or two chunks (and open transitions)
    assert write.chunks_written <= 3 and write.chunks_linked >= 2
    assert write.chunks_written + write.chunks_linked + write.chunks_empty == 8 + 1  # + the empty file
    assert_same_replay(again, resumed)


def test_another_chunk_size_or_a_vanished_base_writes_everything(tmp_path):
    agent = make_agent()
    Streams(agent).ticks(100)
    first = save_checkpoint(agent, tmp_path / "a.pt", include_replay=True, chunk_slots=CHUNK)
    save_checkpoint(agent, tmp_path / "b.pt", include_replay=True, chunk_slots=2 * CHUNK)
    assert agent.last_replay_write.chunks_linked == 0
    remove_checkpoint(tmp_path / "b.pt")
    remove_checkpoint(first)
    third = save_checkpoint(agent, tmp_path / "c.pt", include_replay=True, chunk_slots=2 * CHUNK)
    assert agent.last_replay_write.chunks_linked == 0
    assert_same_replay(third, agent)


def test_a_replay_folder_without_its_checkpoint_is_removed(tmp_path):
    agent = make_agent()
    Streams(agent).ticks(60)
    kept = save_checkpoint(agent, tmp_path / "episode_1.pt", include_replay=True, chunk_slots=CHUNK)
    orphan = tmp_path / "episode_2.pt.replay-9-0000abcd"  # a process killed while writing it
    orphan.mkdir()
    (orphan / "chunk_00000.pt").write_bytes(b"partial")
    assert remove_orphan_replays(tmp_path) == [orphan]
    assert not orphan.exists()
    verify_checkpoint(kept)


@pytest.mark.parametrize("damage", ["missing_chunk", "nan_weights"])
def test_verify_refuses_what_cannot_be_resumed(tmp_path, damage):
    import torch

    from carla_rl.learner.checkpoint import CheckpointError, agent_state, write_file

    agent = make_agent()
    Streams(agent).ticks(60)
    path = save_checkpoint(agent, tmp_path / "a.pt", include_replay=True, chunk_slots=CHUNK)
    if damage == "missing_chunk":
        files_of(path)["chunk_00001.pt"].unlink()
        match = "replay chunk .*chunk_00001.pt is missing"
    else:
        state = agent_state(agent)
        state["online"] = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
                           for k, v in state["online"].items()}
        write_file(path, state)
        match = "online weights are not finite"
    with pytest.raises(CheckpointError, match=match):
        verify_checkpoint(path)
