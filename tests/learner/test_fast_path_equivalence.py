"""The fast path computes the reference update (checked on CPU, where the fast path runs eagerly:
no compile, streams, autocast or graphs, but its own layouts, passes, optimizer and sampler).

The reference is ``DQNAgent.update`` over :class:`DQNAlgorithm` (host replay); the fast path is
``FastUpdater`` over :class:`FastDQNAlgorithm` (device replay) with the CUDA preset's switches
(config/agent_cuda.yaml). Both agents start from the same weights and replay contents, the
reference is handed the transitions (and importance weights) the fast path drew, and both draw
the same noise: loss, statistics, gradients, parameters, Adam's moments, target network and
priorities must agree within float rounding."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from carla_rl.learner.agent_config import (FAST_PATH_FIELDS, NetworkConfig,
                                           load_device_agent_config)
from carla_rl.learner.algorithm import DQNAlgorithm, to_batch
from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.learner.fast_algorithm import FastDQNAlgorithm
from carla_rl.learner.fast_update import FastUpdater

from helpers import TINY_SPEC, tiny_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"
RTOL, ATOL = 1e-4, 1e-6

# Rainbow as shipped; a plain DQN variant (scalar head, no double, uniform replay, soft target)
VARIANTS = {
    "rainbow": {},
    "plain": {"distributional": False, "double": False, "noisy": False, "dueling": False,
              "target_update": "soft", "tau": 0.1, "prioritized": False},
}


def preset_config(**overrides):
    """tiny_config with the CUDA preset's fast-path switches and a network whose two convs both
    run over space-to-depth blocks there (4x4 stride 2, then 2x2 stride 2, on 8x8 frames)."""
    preset = load_device_agent_config(CONFIG_DIR, "cuda")
    prioritized = overrides.pop("prioritized", True)
    cfg = tiny_config(learning_starts=32, target_update_interval=2,
                      **{field: getattr(preset, field) for field in FAST_PATH_FIELDS}, **overrides)
    cfg.network = NetworkConfig(conv_channels=[4, 8], conv_kernels=[4, 2], conv_strides=[2, 2],
                                vector_hidden=[16], hidden_size=32)
    cfg.replay = dataclasses.replace(cfg.replay, prioritized=prioritized)
    return cfg


def agent_pair(cfg) -> tuple[DQNAgent, DQNAgent]:
    """(reference agent, fast-path agent) on CPU with equal weights and equal replay contents."""
    reference = DQNAgent(TINY_SPEC, 3, cfg, seed=0)
    fast = DQNAgent(TINY_SPEC, 3, cfg, seed=0, fast_path=True)
    assert type(reference.algorithm) is DQNAlgorithm
    assert isinstance(fast.algorithm, FastDQNAlgorithm)
    fast.online.load_state_dict(reference.online.state_dict())
    fast.target.load_state_dict(reference.target.state_dict())
    rng = np.random.default_rng(0)
    for t in range(150):
        frame = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        vector = rng.random(3, dtype=np.float32)
        reward, terminated = float(rng.normal()), t % 37 == 36
        mask = np.array([True, t % 5 != 0, True])  # action 1 sometimes not allowed
        for agent in (reference, fast):
            agent.observe(0, frame, vector, reward, terminated, False, t % 37 == 0, mask)
        if not terminated:
            action = int(rng.integers(0, 3))
            for agent in (reference, fast):
                agent.record_action(0, action)
    return reference, fast


def hand_over_fast_draws(reference: DQNAgent, fast: DQNAgent) -> list:
    """Make each reference update sample the transitions and weights that the fast path's last
    update drew; returns the list the fast draws are appended to."""
    updater = fast._fast = FastUpdater(fast)
    draws = []
    sample = updater._sample

    def recording_sample(batch_size, beta):
        slots, batch, valid = sample(batch_size, beta)
        draws.append((slots.clone(), batch.weights.clone(), valid.clone()))
        return slots, batch, valid

    updater._sample = recording_sample

    def replayed_sample(batch_size, beta):
        slots, weights, valid = draws[-1]
        assert bool(valid.all()) and len(slots) == batch_size
        seqs = slots.numpy().astype(np.int64)  # the ring has not wrapped: slot == sequence number
        host = reference.replay  # its own importance weights for them agree
        np.testing.assert_allclose(host._weights(seqs, beta), weights.numpy(), rtol=RTOL)
        return host._gather(seqs, weights.numpy())

    reference.replay.sample = replayed_sample
    return draws


def _state(agent: DQNAgent) -> list[torch.Tensor]:
    """Online and target weights and Adam's moments, as plain values."""
    adam = agent.algorithm.optimizer.state_dict()["state"]
    return ([v.detach().clone() for v in agent.online.state_dict().values()]
            + [v.detach().clone() for v in agent.target.state_dict().values()]
            + [s[key].clone().contiguous() for s in adam.values()
               for key in ("exp_avg", "exp_avg_sq")])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fast_path_updates_equal_the_reference_updates(variant):
    cfg = preset_config(**VARIANTS[variant])
    reference, fast = agent_pair(cfg)
    assert fast.online.encoder.space_to_depth_layers == [True, True]
    assert fast.algorithm.grouped_next_passes and fast.algorithm.flat_adam is not None
    draws = hand_over_fast_draws(reference, fast)
    initial = [p.detach().clone() for p in fast.online.parameters()]
    for update in range(4):  # hard target copies after updates 2 and 4
        torch.manual_seed(100 + update)  # both resample the noise from this state
        got = fast.update()
        torch.manual_seed(100 + update)
        expected = reference.update()
        assert len(draws) == update + 1 and got.updates == expected.updates == update + 1
        for field in ("loss", "mean_q", "td_error", "grad_norm", "beta", "lr"):
            assert getattr(got, field) == pytest.approx(getattr(expected, field), rel=RTOL,
                                                        abs=ATOL), field
        for a, b in zip(_state(fast), _state(reference), strict=True):
            torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
        slots = draws[-1][0]
        leaves = fast._fast.replay.leaves.view(-1)[slots].double()
        if cfg.replay.prioritized:  # the priorities written back, as (p + eps)^alpha
            torch.testing.assert_close(leaves, torch.from_numpy(reference.replay.tree[slots.numpy()]),
                                       rtol=RTOL, atol=ATOL)
        else:
            assert bool((leaves == 1.0).all())
    assert got.loss > 0
    assert any(not torch.equal(a, b) for a, b in zip(initial, fast.online.parameters()))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_fast_path_loss_and_gradients_equal_the_reference(variant):
    """One batch through both algorithms: loss, priorities, |td|, Q of the taken actions and the
    gradients before clipping (the fast path's batch holds the first conv's input blocks)."""
    cfg = preset_config(**VARIANTS[variant])
    reference, fast = agent_pair(cfg)
    updater = FastUpdater(fast)
    torch.manual_seed(1)
    slots, fast_batch, valid = updater._sample(cfg.batch_size, torch.tensor(0.4))
    assert fast_batch.frames.is_floating_point()  # sample_conv_input
    seqs = slots.numpy().astype(np.int64)
    batch = to_batch(reference.replay._gather(seqs, fast_batch.weights.numpy()),
                     reference.device)
    results = []
    for agent, b in ((reference, batch), (fast, fast_batch)):
        torch.manual_seed(2)
        agent.algorithm.reset_noise()
        agent.online.zero_grad(set_to_none=True)
        loss, priorities, td_abs, q_taken = agent.algorithm.loss(b)
        loss.backward()
        grads = [p.grad.detach().clone().contiguous() for p in agent.online.parameters()]
        results.append([loss.detach(), priorities, td_abs, q_taken, *grads])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL)
    assert any(bool(g.abs().sum() > 0) for g in results[0][4:])


def test_the_fast_path_needs_its_algorithm():
    agent = DQNAgent(TINY_SPEC, 3, tiny_config(), seed=0)
    assert not agent.use_fast_path and agent.updates_per_call == 1
    with pytest.raises(TypeError, match="fast_path=True"):
        FastUpdater(agent)
