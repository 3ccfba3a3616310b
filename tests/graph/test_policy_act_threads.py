"""dqn_policy's composed_act_threads: a large act batch of a policy composed with the simulators runs on
more torch threads, then the thread count goes back (threads started later keep torch_threads); the
Q-values, and so the actions, are those of a one-thread act."""

import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("rclpy", reason="rclpy missing: run through `make test`")

from carla_rl.nodes.dqn_policy_node import DQNPolicyNode, PolicyNodeConfig  # noqa: E402


def fake_node(composed: bool, threads: int = 2, min_batch: int = 8):
    cfg = PolicyNodeConfig(composed_act_threads=threads, composed_act_threads_min_batch=min_batch)
    return types.SimpleNamespace(cfg=cfg, composed=composed)


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def threads_inside(node, batch: int) -> int:
    with DQNPolicyNode.act_threads(node, batch):
        return torch.get_num_threads()


def test_large_batches_of_a_composed_policy_use_more_threads(one_thread):
    assert threads_inside(fake_node(composed=True), 8) == 2
    assert torch.get_num_threads() == 1                       # back afterwards
    assert threads_inside(fake_node(composed=True), 7) == 1   # below the minimum batch
    assert threads_inside(fake_node(composed=False), 64) == 1  # alone in its process: never
    with pytest.raises(RuntimeError):                          # restored on errors too
        with DQNPolicyNode.act_threads(fake_node(composed=True), 8):
            raise RuntimeError("act failed")
    assert torch.get_num_threads() == 1


def test_more_threads_give_the_same_actions(one_thread):
    from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
    from carla_rl.learner.dqn_agent import DQNAgent

    agent = DQNAgent(ObservationSpec(4, 84, 84, 40), 6, AgentConfig(), device="cpu", seed=0)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (8, 4, 84, 84), dtype=np.uint8)
    vectors = rng.normal(size=(8, 40)).astype(np.float32)
    single = agent.act(frames, vectors, explore=False)
    with DQNPolicyNode.act_threads(fake_node(composed=True), len(frames)):
        assert torch.get_num_threads() == 2
        double = agent.act(frames, vectors, explore=False)
    np.testing.assert_allclose(double.q_values, single.q_values, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(double.actions, single.actions)
