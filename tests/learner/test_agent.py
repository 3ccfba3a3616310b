import numpy as np
import pytest
import torch

from carla_rl.learner.algorithm import Batch, categorical_projection
from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, ChainMDP, tiny_config


def slow_projection(probs, returns, discounts, support):
    """Reference C51 projection, one atom at a time (Bellemare et al. 2017, Algorithm 1)."""
    n = len(support)
    v_min, v_max = support[0], support[-1]
    dz = (v_max - v_min) / (n - 1)
    out = np.zeros_like(probs)
    for i in range(probs.shape[0]):
        for j in range(n):
            tz = min(max(returns[i] + discounts[i] * support[j], v_min), v_max)
            b = (tz - v_min) / dz
            lo, hi = int(np.floor(b)), int(np.ceil(b))
            if lo == hi:
                out[i, lo] += probs[i, j]
            else:
                out[i, lo] += probs[i, j] * (hi - b)
                out[i, hi] += probs[i, j] * (b - lo)
    return out


def test_categorical_projection_matches_slow_reference():
    rng = np.random.default_rng(0)
    support = np.linspace(-3.0, 3.0, 13)
    probs = rng.random((64, 13))
    probs /= probs.sum(1, keepdims=True)
    returns = rng.normal(0, 2, 64)
    returns[:4] = [0.0, 0.5, 10.0, -10.0]  # on an atom, on an atom, clipped high / low
    discounts = rng.choice([0.0, 0.9, 0.99 ** 3], 64)
    got = categorical_projection(torch.tensor(probs), torch.tensor(returns),
                                 torch.tensor(discounts), torch.tensor(support)).numpy()
    np.testing.assert_allclose(got, slow_projection(probs, returns, discounts, support),
                               atol=1e-12)
    np.testing.assert_allclose(got.sum(1), 1.0)


def test_distributional_loss_equals_the_softmax_over_every_action_indexed_after():
    """The loss takes the taken / chosen action's row before its (log-)softmax: the loss, its
    gradient and the priorities equal those of the softmax over every row indexed afterwards,
    with the slow projection as the target."""
    agent = DQNAgent(TINY_SPEC, 3, tiny_config(), device="cpu", seed=0)
    gen = torch.Generator().manual_seed(0)
    b, a, n = 8, 3, agent.config.n_atoms
    out = torch.randn(b, a, n, generator=gen, requires_grad=True)
    next_target = torch.randn(b, a, n, generator=gen)
    next_select = torch.randn(b, a, generator=gen)
    actions = torch.randint(0, a, (b,), generator=gen)
    returns = torch.randn(b, generator=gen)
    discounts = torch.full((b,), 0.9)
    weights = torch.rand(b, generator=gen)
    batch = Batch(None, None, actions, returns, None, None, discounts, weights,
                  torch.full((b,), 0b011, dtype=torch.int64))  # action 2 not allowed next
    support = agent.algorithm.network.support
    loss, priorities, _, _ = agent.algorithm.loss_terms(batch, out, next_select, next_target)
    (grad,) = torch.autograd.grad(loss, out)

    rows = torch.arange(b)
    next_actions = next_select[:, :2].argmax(1)
    next_probs = next_target.softmax(-1)[rows, next_actions]
    target = torch.tensor(slow_projection(next_probs.double().numpy(), returns.double().numpy(),
                                          discounts.double().numpy(), support.double().numpy()),
                          dtype=torch.float32)
    per_sample = -(target * out.log_softmax(-1)[rows, actions]).sum(-1)
    reference = (weights * per_sample).mean()
    (reference_grad,) = torch.autograd.grad(reference, out)
    torch.testing.assert_close(loss, reference)
    torch.testing.assert_close(priorities, per_sample.detach())
    torch.testing.assert_close(grad, reference_grad)
    taken = torch.zeros(b, a, dtype=torch.bool)
    taken[rows, actions] = True
    assert (grad[taken] != 0).any() and (grad[~taken] == 0).all()  # only the taken rows learn


def _batch(frames, next_frames, returns, discounts, next_masks=None):
    b = frames.shape[0]
    masks = torch.full((b,), -1, dtype=torch.int64) if next_masks is None \
        else torch.tensor(next_masks, dtype=torch.int64)
    return Batch(frames, torch.zeros(b, 3), torch.zeros(b, dtype=torch.int64),
                 torch.tensor(returns, dtype=torch.float32), next_frames, torch.zeros(b, 3),
                 torch.tensor(discounts, dtype=torch.float32), torch.ones(b), masks)


@pytest.mark.parametrize("double,mask_bits,expected_value", [
    (True, None, 2.0),     # double: target net's value of the online argmax (action 1)
    (False, None, 9.0),    # plain: target net's own max (action 2)
    (True, 0b101, 9.0),    # action 1 masked at the next obs: online picks 2 -> 9
    (False, 0b011, 7.0),   # action 2 masked: target's max over {0, 1} -> 7
])
def test_double_dqn_target_selection(double, mask_bits, expected_value):
    cfg = tiny_config(double=double, noisy=False, distributional=False, dueling=False)
    agent = DQNAgent(TINY_SPEC, 3, cfg, seed=0)
    frames = torch.zeros(1, 2, 8, 8, dtype=torch.uint8)

    def fixed_q(values):
        def forward(f, v, noise=True):
            return torch.tensor([values], dtype=torch.float32).expand(f.shape[0], -1)
        return forward

    agent.online.forward = fixed_q([0.0, 5.0, 1.0])   # online prefers action 1
    agent.target.forward = fixed_q([7.0, 2.0, 9.0])   # target prefers action 2
    batch = _batch(frames, frames, [1.0], [0.5], None if mask_bits is None else [mask_bits])
    _, _, td_abs, q_taken = agent.algorithm.loss(batch)
    assert float(td_abs[0] + q_taken[0]) == pytest.approx(1.0 + 0.5 * expected_value)


def test_masked_actions_never_chosen():
    for noisy in (True, False):
        cfg = tiny_config(noisy=noisy, learning_starts=0)
        cfg.exploration.epsilon_start = 1.0  # fully random where epsilon applies
        agent = DQNAgent(TINY_SPEC, 4, cfg, seed=1)
        frames = np.random.default_rng(0).integers(0, 256, (64, 2, 8, 8), dtype=np.uint8)
        vectors = np.zeros((64, 3), np.float32)
        mask = np.zeros((64, 4), bool)
        mask[np.arange(64), np.arange(64) % 4] = True
        mask[::3, 2] = True
        for explore in (True, False):
            for _ in range(5):
                result = agent.act(frames, vectors, explore=explore, action_mask=mask)
                assert mask[np.arange(64), result.actions].all()
                assert result.actions.dtype == np.int64 and result.q_values.shape == (64,)
        with pytest.raises(ValueError):
            agent.act(frames, vectors, action_mask=np.zeros((64, 4), bool))


def run_chain(agent: DQNAgent, env_steps: int, num_envs: int = 2, update=None) -> None:
    update = update or agent.update
    rng = np.random.default_rng(0)
    envs = [ChainMDP(rng) for _ in range(num_envs)]
    outcome = [None] * num_envs
    for _ in range(env_steps // num_envs):
        stacks, vecs, alive = [], [], []
        for i, env in enumerate(envs):
            if outcome[i] is None:
                frame, vec = env.reset()
                seq = agent.observe(i, frame, vec, 0.0, False, False, True)
            else:
                reward, term, trunc = outcome[i]
                frame, vec = env.obs()
                seq = agent.observe(i, frame, vec, reward, term, trunc, False)
                if term or trunc:
                    outcome[i] = None
                    continue
            stacks.append(agent.replay.frame_stack(np.array([seq]))[0])
            vecs.append(vec)
            alive.append(i)
        if alive:
            result = agent.act(np.stack(stacks), np.stack(vecs))
            for i, action in zip(alive, result.actions):
                agent.record_action(i, int(action))
                outcome[i] = envs[i].step(int(action))
        for _ in range(agent.updates_due()):
            update()


def greedy_actions(agent: DQNAgent) -> list[int]:
    env = ChainMDP(np.random.default_rng(0))
    frames, vectors = [], []
    for state in range(1, ChainMDP.LENGTH - 1):
        env.state = state
        frame, vec = env.obs()
        frames.append(np.stack([frame] * TINY_SPEC.frame_stack))
        vectors.append(vec)
    return agent.act(np.stack(frames), np.stack(vectors), explore=False).actions.tolist()


@pytest.mark.parametrize("rainbow,seed,device_replay", [(True, 0, False), (False, 0, False),
                                                         (True, 1, True)])
def test_agent_learns_chain_mdp(rainbow, seed, device_replay):
    """device_replay: the fast path (FastUpdater's on-device sampling, FastDQNAlgorithm), eager on
    CPU."""
    torch.manual_seed(seed)
    if rainbow:  # noisy + C51 + dueling + double + PER + 3-step
        cfg = tiny_config(lr=1e-3, target_update_interval=50, train_frequency=1,
                          learning_starts=200)
    else:        # plain DQN with epsilon-greedy, uniform replay, 1-step, soft target
        cfg = tiny_config(lr=1e-3, noisy=False, distributional=False, dueling=False,
                          target_update="soft", tau=0.05, train_frequency=1,
                          learning_starts=200)
        cfg.replay.prioritized = False
        cfg.replay.n_step = 1
        cfg.exploration.epsilon_decay_steps = 1000
        cfg.exploration.epsilon_end = 0.1
    cfg.gamma = 0.8  # margin right vs stay next to the 0.1 exit: 0.64 vs 0.51
    cfg.n_atoms, cfg.v_min, cfg.v_max = 21, -0.5, 1.5
    agent = DQNAgent(TINY_SPEC, 3, cfg, seed=seed, fast_path=device_replay)
    run_chain(agent, env_steps=2000)
    assert (agent._fast is not None) == device_replay
    assert agent.updates > 1000
    assert greedy_actions(agent) == [1] * (ChainMDP.LENGTH - 2)  # always move right


def test_categorical_projection_stays_in_bounds_when_rounding_overshoots():
    """linspace(-4.1, 4.1, 51) puts (v_max - v_min) / delta_z at 50.0000038 in float32: before the
    clamp, the scatter-add projection's ceil() gave atom 51, out of bounds (first seen on CUDA);
    the dense weighting would give the top atom only 1 - 3.8e-6 of the mass landing there."""
    import torch

    from carla_rl.learner.algorithm import categorical_projection

    support = torch.linspace(-4.1, 4.1, 51)
    next_probs = torch.full((3, 51), 1.0 / 51)
    returns = torch.tensor([4.1, 0.0, 100.0])
    discounts = torch.tensor([1.0, 1.0, 0.0])
    projected = categorical_projection(next_probs, returns, discounts, support)
    assert torch.allclose(projected.sum(1), torch.ones(3), rtol=0.0, atol=1e-6)  # no mass lost
    # a return above v_max lands on the top atom
    assert projected[2, -1] == pytest.approx(1.0, abs=1e-6)
