"""CUDA-only checks (skipped without a GPU): graph-captured updates and the benchmark."""

import numpy as np
import pytest
import torch

from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, tiny_config

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def filled_cuda_agent(cfg, steps: int = 200) -> DQNAgent:
    """A CUDA agent whose replay holds ``steps`` ticks of one random episode."""
    agent = DQNAgent(TINY_SPEC, 3, cfg, device="cuda", seed=0)
    rng = np.random.default_rng(0)
    for t in range(steps):
        agent.observe(0, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                      rng.random(3, dtype=np.float32), float(rng.normal()), False, False, t == 0)
        agent.record_action(0, int(rng.integers(0, 3)))
    return agent


@pytest.mark.parametrize("precision", ["off", "bf16", "fp16"])
def test_cuda_graph_updates_match_semantics(precision):
    cfg = tiny_config(learning_starts=32, cuda_graphs=True, mixed_precision=precision)
    agent = filled_cuda_agent(cfg)
    for _ in range(5):
        stats = agent.update()
    before = [p.detach().clone() for p in agent.online.parameters()]
    leaves = agent._fast.replay.leaves.clone()
    for _ in range(5):  # graph replays (captured during the first updates)
        stats = agent.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    assert agent.updates == 10
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters()))
    assert not torch.equal(leaves, agent._fast.replay.leaves)  # priorities updated in-graph
    assert (agent._fast.graph is not None) == (precision != "fp16")
    rng = np.random.default_rng(1)
    result = agent.act(rng.integers(0, 256, (4, 2, 8, 8), dtype=np.uint8),
                       np.zeros((4, 3), np.float32), explore=False)
    assert result.actions.shape == (4,)


def test_benchmark_on_cuda():
    from carla_rl.learner.learner_benchmark import run_learner_benchmark

    result = run_learner_benchmark("cuda", batch_size=32, seconds=1.0, capacity=5000)
    assert result["updates_per_s"] > 0 and result["eager_updates_per_s"] > 0
    assert result["fast_path"] != "eager"


def test_several_updates_per_graph_replay_keep_counters_and_target_copies():
    cfg = tiny_config(learning_starts=32, cuda_graphs=True, updates_per_graph=4,
                      target_update="hard", target_update_interval=8)
    agent = filled_cuda_agent(cfg)
    while agent._fast is None or agent._fast.graph is None:  # eager warm-up up to a multiple of 4
        agent.update()
    assert agent.updates % 4 == 0 and agent.updates_per_call == 4
    start = agent.updates
    stats = agent.update()
    assert agent.updates == start + 4 and stats.updates == agent.updates
    assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    while agent.updates % 8:  # on an interval boundary the target equals the online net
        agent.update()
    torch.cuda.synchronize()
    assert all(torch.equal(a, b) for a, b in zip(agent.online.parameters(), agent.target.parameters()))
    agent.update()
    torch.cuda.synchronize()
    assert any(not torch.equal(a, b) for a, b in zip(agent.online.parameters(), agent.target.parameters()))

