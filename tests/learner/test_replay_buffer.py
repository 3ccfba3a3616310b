"""Replay memory against a naive per-episode reference: frame stacks (with episode-start
padding), n-step returns across terminations, truncations, interleaved envs and ring wrap."""

from __future__ import annotations

import numpy as np
import pytest

from carla_rl.learner.agent_config import ObservationSpec
from carla_rl.learner.replay_buffer import PrioritizedReplayBuffer, ReplayBuffer

SPEC = ObservationSpec(frame_stack=4, height=5, width=6, vector_size=2)
GAMMA = 0.9


def drive(buffer: ReplayBuffer, ticks: int, num_envs: int, seed: int) -> dict[int, dict]:
    """Random interleaved episodes; returns per-seq reference info."""
    rng = np.random.default_rng(seed)
    info: dict[int, dict] = {}
    episodes: dict[int, list[int]] = {}  # env -> seqs of its running episode
    pending: dict[int, tuple] = {}       # env -> (reward, terminated, truncated) or None
    for _ in range(ticks):
        for env in rng.permutation(num_envs):
            if rng.random() < 0.2:  # this env is late this tick: irregular interleaving
                continue
            frame = rng.integers(0, 256, (SPEC.height, SPEC.width), dtype=np.uint8)
            vector = rng.random(SPEC.vector_size).astype(np.float32)
            outcome = pending.get(env)
            start = outcome is None
            reward, term, trunc = outcome if outcome else (0.0, False, False)
            seq = buffer.observe(env, frame, vector, reward, term, trunc, start)
            if start:
                episodes[env] = []
            else:
                info[episodes[env][-1]].update(reward=reward, terminated=term, next=seq)
            episodes[env].append(seq)
            info[seq] = {"frame": frame, "vector": vector, "episode": list(episodes[env]),
                         "action": None, "terminated": False, "next": None,
                         "final": term or trunc}
            if term or trunc:
                pending[env] = None
                continue
            action = int(rng.integers(0, 6))
            buffer.record_action(env, action)
            info[seq]["action"] = action
            u = rng.random()
            pending[env] = (float(rng.normal()), u < 0.08, 0.08 <= u < 0.16)
    return info


def naive_stack(info, seq):
    episode = info[seq]["episode"]  # seqs of the episode up to and including seq
    picks = [episode[max(0, len(episode) - SPEC.frame_stack + k)]
             for k in range(SPEC.frame_stack)]
    return np.stack([info[s]["frame"] for s in picks])


def naive_nstep(info, seq, n_step):
    """Reference n-step return: (return, discount, bootstrap seq)."""
    ret, disc, cur = 0.0, 1.0, seq
    for k in range(n_step):
        step = info[cur]
        ret += disc * step["reward"]
        disc *= GAMMA
        nxt = step["next"]
        if step["terminated"]:
            return ret, 0.0, nxt
        nstep = info[nxt]
        if k == n_step - 1 or nstep["action"] is None or nstep["next"] is None:
            return ret, disc, nxt
        cur = nxt
    raise AssertionError("unreachable")


def valid_seqs(buffer, info):
    out = []
    for seq, step in info.items():
        oldest = step["episode"][max(0, len(step["episode"]) - SPEC.frame_stack)]
        if step["action"] is not None and step["next"] is not None \
                and oldest >= buffer.total - buffer.capacity:
            out.append(seq)
    return np.array(sorted(out), dtype=np.int64)


@pytest.mark.parametrize("capacity,n_step", [(10_000, 3), (10_000, 1), (97, 3), (97, 5)])
def test_samples_match_naive_reference(capacity, n_step):
    buffer = ReplayBuffer(capacity, SPEC, n_step=n_step, gamma=GAMMA,
                          rng=np.random.default_rng(0))
    info = drive(buffer, ticks=300, num_envs=3, seed=capacity + n_step)
    seqs = valid_seqs(buffer, info)
    alive = np.arange(buffer.oldest_seq, buffer.total)
    np.testing.assert_array_equal(alive[buffer.is_valid(alive)], seqs)
    scalar = [buffer.is_valid_one(int(s)) for s in range(buffer.total + 2)]
    np.testing.assert_array_equal(np.flatnonzero(scalar), seqs)
    sample = buffer._gather(seqs, np.ones(len(seqs)))
    for i, seq in enumerate(seqs):
        step = info[int(seq)]
        np.testing.assert_array_equal(sample.frames[i], naive_stack(info, int(seq)))
        np.testing.assert_array_equal(sample.vectors[i], step["vector"])
        assert sample.actions[i] == step["action"]
        ret, disc, boot = naive_nstep(info, int(seq), n_step)
        assert sample.returns[i] == pytest.approx(ret, rel=1e-5, abs=1e-5)
        assert sample.discounts[i] == pytest.approx(disc, rel=1e-6)
        np.testing.assert_array_equal(sample.next_frames[i], naive_stack(info, boot))
        np.testing.assert_array_equal(sample.next_vectors[i], info[boot]["vector"])


def test_terminal_truncated_and_episode_start_padding_explicitly():
    spec = ObservationSpec(frame_stack=3, height=1, width=1, vector_size=0)
    buffer = ReplayBuffer(100, spec, n_step=3, gamma=0.5)
    f = lambda v: np.full((1, 1), v, np.uint8)  # noqa: E731
    # env 0: obs 10, 11, 12(truncated final); env 1 interleaved: 20, 21(terminal)
    s10 = buffer.observe(0, f(10), None, 0.0, False, False, True)
    buffer.record_action(0, 1)
    s20 = buffer.observe(1, f(20), None, 0.0, False, False, True)
    buffer.record_action(1, 2)
    s11 = buffer.observe(0, f(11), None, 1.0, False, False, False)
    buffer.record_action(0, 1)
    s21 = buffer.observe(1, f(21), None, 4.0, True, False, False)
    with pytest.raises(ValueError, match="reset"):
        buffer.record_action(1, 0)
    s12 = buffer.observe(0, f(12), None, 2.0, False, True, False)
    assert buffer.frame_stack(np.array([s10]))[0].ravel().tolist() == [10, 10, 10]
    assert buffer.frame_stack(np.array([s11]))[0].ravel().tolist() == [10, 10, 11]
    assert buffer.frame_stack(np.array([s12]))[0].ravel().tolist() == [10, 11, 12]
    returns, discounts, boot = buffer.n_step_targets(np.array([s10, s11, s20]))
    np.testing.assert_allclose(returns, [1.0 + 0.5 * 2.0, 2.0, 4.0])
    np.testing.assert_allclose(discounts, [0.25, 0.5, 0.0])  # truncation bootstraps
    np.testing.assert_array_equal(boot, [s12, s12, s21])
    assert not buffer.is_valid(np.array([s12, s21])).any()  # no action follows a final obs
    sample = buffer._gather(np.array([s10, s20]), np.ones(2))
    np.testing.assert_array_equal(sample.next_masks, [-1, -1])  # no mask given: all allowed
    with pytest.raises(ValueError, match="no running episode"):
        buffer.observe(0, f(13), None, 0.0, False, False, False)


def test_prioritized_tree_tracks_validity_through_wraparound():
    buffer = PrioritizedReplayBuffer(61, SPEC, n_step=3, gamma=GAMMA, alpha=0.6,
                                     rng=np.random.default_rng(3))
    drive(buffer, ticks=200, num_envs=3, seed=7)
    alive = np.arange(buffer.oldest_seq, buffer.total)
    leaves = buffer.tree[alive % buffer.capacity]
    np.testing.assert_array_equal(leaves > 0, buffer.is_valid(alive))
    sample = buffer.sample(16, beta=0.4)
    assert buffer.is_valid(sample.indices).all()
    assert sample.weights.max() == pytest.approx(1.0)
    buffer.update_priorities(sample.indices, np.full(16, 5.0))
    assert buffer.max_priority == pytest.approx(5.0 + 1e-6)


def test_bytes_per_transition_at_84x84():
    spec = ObservationSpec(frame_stack=4, height=84, width=84, vector_size=16)
    buffer = PrioritizedReplayBuffer(1000, spec)
    assert buffer.bytes_per_transition <= 8 * 1024
    assert buffer.frames.shape == (1000, 84, 84)  # each frame stored once, not 4 times


def test_action_masks_are_stored_for_bootstrap():
    from carla_rl.learner.replay_buffer import bits_to_mask

    spec = ObservationSpec(frame_stack=2, height=1, width=1, vector_size=0)
    buffer = ReplayBuffer(10, spec, n_step=1)
    f = np.zeros((1, 1), np.uint8)
    mask_a = np.array([True, False, True, False, False, True])
    mask_b = np.array([False, True, False, False, False, False])
    s0 = buffer.observe(0, f, None, 0.0, False, False, True, action_mask=mask_a)
    buffer.record_action(0, 0)
    buffer.observe(0, f, None, 1.0, False, False, False, action_mask=mask_b)
    sample = buffer._gather(np.array([s0]), np.ones(1))
    np.testing.assert_array_equal(bits_to_mask(sample.next_masks, 6)[0], mask_b)
    np.testing.assert_array_equal(bits_to_mask(buffer.masks[[s0]], 6)[0], mask_a)
    full = np.ones(32, bool)
    buffer.observe(1, f, None, 0.0, False, False, True, action_mask=full)
    assert bits_to_mask(buffer.masks[[2]], 32).all()
