"""The device replay / fast update path, run eagerly on CPU (graphs are tested on CUDA). Agents
here run the fast path's update (``fast_path=True``); its equality with the reference update is
tested in test_fast_path_equivalence.py."""

import numpy as np
import pytest
import torch

from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.learner.fast_update import DeviceReplay, FastUpdater
from carla_rl.learner.networks import first_conv_input
from carla_rl.learner.replay_buffer import PrioritizedReplayBuffer, ReplayBuffer

from helpers import TINY_SPEC, tiny_config
from test_replay_buffer import GAMMA, SPEC, drive


@pytest.mark.parametrize("capacity", [10_000, 97])
def test_device_replay_matches_host_replay(capacity):
    buffer = ReplayBuffer(capacity, SPEC, n_step=3, gamma=GAMMA)
    drive(buffer, ticks=150, num_envs=3, seed=1)
    mirror = DeviceReplay(buffer, torch.device("cpu"), prioritized=False, alpha=0.6,
                          priority_eps=1e-6)
    mirror.sync()
    alive = np.arange(buffer.oldest_seq, buffer.total)
    host_valid = buffer.is_valid(alive)
    dev_valid = (mirror.leaves.view(-1)[torch.from_numpy(alive % capacity)] > 0).numpy()
    np.testing.assert_array_equal(dev_valid, host_valid)
    seqs = alive[host_valid]
    host = buffer._gather(seqs, np.ones(len(seqs)))
    dev = mirror.gather(torch.from_numpy(seqs % capacity), torch.ones(len(seqs)))
    np.testing.assert_array_equal(dev.frames.numpy(), host.frames)
    np.testing.assert_array_equal(dev.next_frames.numpy(), host.next_frames)
    np.testing.assert_array_equal(dev.actions.numpy(), host.actions)
    np.testing.assert_array_equal(dev.returns.numpy(), host.returns)
    np.testing.assert_array_equal(dev.discounts.numpy(), host.discounts)
    np.testing.assert_array_equal(dev.vectors.numpy(), host.vectors)
    np.testing.assert_array_equal(dev.next_vectors.numpy(), host.next_vectors)
    np.testing.assert_array_equal(dev.next_masks.numpy(), host.next_masks)


def _valid_tables(replay: DeviceReplay) -> dict[str, torch.Tensor]:
    valid = replay.leaves.view(-1)[:replay.capacity] > 0
    names = ("frames", "vectors", "actions", "stack_slots", "returns", "discounts",
             "boot_slots", "masks")
    return {"leaves": replay.leaves, **{n: getattr(replay, n)[valid] for n in names}}


def test_incremental_sync_equals_full_sync_and_sampling_is_proportional():
    buffer = PrioritizedReplayBuffer(61, SPEC, n_step=3, gamma=GAMMA)
    drive(buffer, ticks=40, num_envs=3, seed=2)
    incremental = DeviceReplay(buffer, torch.device("cpu"), True, 0.6, 1e-6)
    buffer.take_dirty()
    incremental.sync()
    rng = np.random.default_rng(0)
    for round_ in range(30):  # wraps the ring several times, syncing at odd moments
        drive(buffer, ticks=int(rng.integers(1, 4)), num_envs=3, seed=100 + round_)
        incremental.sync(buffer.take_dirty())
    full = DeviceReplay(buffer, torch.device("cpu"), True, 0.6, 1e-6)
    full.sync()
    inc, ref = _valid_tables(incremental), _valid_tables(full)
    for name in ref:
        assert torch.equal(inc[name], ref[name]), name
    torch.manual_seed(0)
    prio = torch.rand(61) * (full.leaves.view(-1)[:61] > 0)
    full.update_priorities(torch.arange(61), prio, prio > 0)
    counts = torch.zeros(61)
    for _ in range(500):
        slots, batch, valid = full.sample(32, torch.tensor(0.4))
        assert valid.all()
        counts += torch.bincount(slots, minlength=61)
    leaves = full.leaves.view(-1)[:61].double()
    expected = leaves / leaves.sum() * counts.sum()
    keep = expected > 0
    assert counts[~keep].sum() == 0
    chi2 = ((counts[keep] - expected[keep]) ** 2 / expected[keep]).sum()
    assert chi2 < 100.0, chi2  # dof <= 60; 99.9% quantile ~ 99.6


def test_fast_updater_runs_eagerly_on_cpu_and_tracks_new_data():
    cfg = tiny_config(learning_starts=32, target_update="soft", tau=0.1)
    agent = DQNAgent(TINY_SPEC, 3, cfg, seed=0, fast_path=True)
    rng = np.random.default_rng(0)

    def feed(steps):
        for t in range(steps):
            agent.observe(0, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                          rng.random(3, dtype=np.float32), float(rng.normal()), False, False,
                          agent.replay.total == 0)
            agent.record_action(0, int(rng.integers(0, 3)))

    feed(100)
    fast = FastUpdater(agent, use_graph=True)  # no CUDA here: falls back to eager steps
    assert not fast.use_graph
    before = [p.clone() for p in agent.online.parameters()]
    for _ in range(5):
        stats = fast.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters()))
    feed(20)
    fast.sync()
    assert int(fast.replay.size) == len(agent.replay)
    assert torch.equal(fast.replay.frames, torch.from_numpy(agent.replay.frames))


@pytest.mark.parametrize("distributional,prioritized", [(True, True), (False, False)])
def test_update_step_has_no_host_syncs(distributional, prioritized):
    """What the CUDA graph captures must not read device values on the host (item(), nonzero,
    boolean masks). Checked on CPU with a dispatch mode; the optimizer step is excluded here
    (on CUDA it is Adam(capturable=True, fused=True))."""
    from torch.utils._python_dispatch import TorchDispatchMode

    syncing = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
               "index_select_backward"}

    class SyncSpy(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.hits = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.__name__.split(".")[0]
            if name in syncing:
                self.hits.append(func.__name__)
            if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
                indices = args[1] if len(args) > 1 else []
                if any(t is not None and t.dtype == torch.bool for t in indices):
                    self.hits.append(f"{func.__name__} with a boolean mask")
            return func(*args, **(kwargs or {}))

    cfg = tiny_config(learning_starts=32, target_update="soft", distributional=distributional,
                      noisy=distributional)
    cfg.replay.prioritized = prioritized
    agent = DQNAgent(TINY_SPEC, 3, cfg, seed=0, fast_path=True)
    rng = np.random.default_rng(0)
    for t in range(100):
        agent.observe(0, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                      rng.random(3, dtype=np.float32), 1.0, False, False, t == 0)
        agent.record_action(0, 1)
    fast = FastUpdater(agent, use_graph=False)
    fast.update()  # initialises the optimizer state
    agent.algorithm.optimizer.step = lambda *a, **k: None
    spy = SyncSpy()
    with spy:
        fast._step()
    assert spy.hits == []


@pytest.mark.parametrize("double", [True, False])
@pytest.mark.parametrize("distributional", [True, False])
def test_parallel_and_grouped_passes_give_the_same_loss_and_gradients(distributional, double):
    """The fast path runs the two next-state passes on side streams (parallel; in order on a
    CPU), or those two as one paired pass (grouped); loss, priorities and gradients must equal
    the serial reference (checked on CPU)."""
    cfg = tiny_config(learning_starts=32, distributional=distributional, noisy=True,
                      double=double)
    agent = DQNAgent(TINY_SPEC, 3, cfg, seed=0, fast_path=True)
    rng = np.random.default_rng(0)
    for t in range(100):
        agent.observe(0, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                      rng.random(3, dtype=np.float32), float(rng.normal()), t % 37 == 36, False,
                      t % 37 == 0)
        if t % 37 != 36:  # no action after a terminal tick: the next one starts an episode
            agent.record_action(0, int(rng.integers(0, 3)))
    fast = FastUpdater(agent, use_graph=False)
    _, batch, _ = fast.replay.sample(cfg.batch_size, torch.tensor(0.4))
    algorithm = agent.algorithm
    results = {}
    for mode in ("serial", "parallel", "grouped"):
        algorithm.parallel_next_passes = mode in ("parallel", "grouped")
        algorithm.grouped_next_passes = mode == "grouped"
        agent.online.zero_grad(set_to_none=True)
        loss, priorities, td_abs, q_taken = algorithm.loss(batch)
        loss.backward()
        grads = [p.grad.clone() for p in agent.online.parameters()]
        results[mode] = (loss.detach(), priorities, td_abs, q_taken, grads)
    assert results["serial"][0] > 0
    for mode in ("parallel", "grouped"):
        for a, b in zip(results["serial"][:4], results[mode][:4]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        for a, b in zip(results["serial"][4], results[mode][4]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("clip", [0.0, 0.5, 1e6])
def test_foreach_norm_then_scaled_step_equals_clip_grad_norm(clip):
    """compile_optimizer's split (global norm by one copy and one reduction, then scaling + Adam)
    gives clip_grad_norm_ + Adam's norm and parameters (run uncompiled on CPU), channels-last
    gradients included."""
    from carla_rl.learner.fast_algorithm import FastDQNAlgorithm
    from carla_rl.learner.networks import QNetwork

    torch.manual_seed(0)
    algorithms = []
    for split in (False, True):  # flat_optimizer off: the per-parameter split step
        cfg = tiny_config(grad_clip_norm=clip, lr=1e-2, compile=split, compile_optimizer=split,
                          flat_optimizer=False, channels_last=split)
        net, target = QNetwork(TINY_SPEC, 3, cfg), QNetwork(TINY_SPEC, 3, cfg)
        if algorithms:
            net.load_state_dict(algorithms[0].network.state_dict())
        algorithms.append(FastDQNAlgorithm(net, target, cfg, torch.device("cpu")))
    reference, split = algorithms
    assert split.compiled_optimizer and not reference.compiled_optimizer
    assert split._clip_and_step == split._norm_then_scaled_step
    for step in range(3):
        grads = [torch.randn_like(p) for p in reference.network.parameters()]
        for algorithm in algorithms:
            for p, g in zip(algorithm.network.parameters(), grads):
                p.grad = g.contiguous(memory_format=torch.channels_last).clone() \
                    if algorithm is split and g.dim() == 4 else g.clone()
        conv_grads = [p.grad for p in split.network.parameters() if p.grad.dim() == 4]
        assert conv_grads and all(not g.is_contiguous() for g in conv_grads)
        expected = reference._clip_and_step()
        norm = split._clip_and_step()
        torch.testing.assert_close(norm, expected)
        for a, b in zip(split.network.parameters(), reference.network.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        if 0 < clip < 1:  # the clipped gradients have the clip norm
            clipped = torch.linalg.vector_norm(torch.stack(
                [p.grad.norm() for p in split.network.parameters()]))
            torch.testing.assert_close(clipped, torch.tensor(clip), rtol=1e-4, atol=1e-6)


def test_flat_in_memory_order_is_a_view_for_dense_layouts_and_keeps_every_element():
    from carla_rl.learner.flat_adam import flat_in_memory_order as _flat_in_memory_order

    base = torch.randn(5, 4, 3, 2)
    channels_last = base.contiguous(memory_format=torch.channels_last)
    flat = _flat_in_memory_order(channels_last)
    assert flat.shape == (base.numel(),)
    assert flat.data_ptr() == channels_last.data_ptr()  # a view: no copy
    torch.testing.assert_close(flat, base.permute(0, 2, 3, 1).reshape(-1))
    assert _flat_in_memory_order(base).data_ptr() == base.data_ptr()
    strided = base[:, ::2]  # not dense: copied, same elements
    torch.testing.assert_close(_flat_in_memory_order(strided).sort().values,
                               strided.reshape(-1).sort().values)


def _agent_with_data(**overrides) -> tuple[DQNAgent, FastUpdater]:
    agent = DQNAgent(TINY_SPEC, 3, tiny_config(learning_starts=32, **overrides), seed=0,
                     fast_path=True)
    rng = np.random.default_rng(0)
    for t in range(100):
        agent.observe(0, rng.integers(0, 256, (8, 8), dtype=np.uint8),
                      rng.random(3, dtype=np.float32), float(rng.normal()), t % 37 == 36, False,
                      t % 37 == 0)
        if t % 37 != 36:
            agent.record_action(0, int(rng.integers(0, 3)))
    fast = FastUpdater(agent, use_graph=False)
    fast.beta.fill_(0.5)
    return agent, fast


def _learner_state(agent: DQNAgent, fast: FastUpdater) -> list[torch.Tensor]:
    """Copies of what a replay of updates changes: weights, Adam's second moments, priorities,
    statistics."""
    adam = agent.algorithm.optimizer.state_dict()["state"]
    return ([p.detach().clone() for p in agent.online.parameters()]
            + [s["exp_avg_sq"].clone() for s in adam.values()]
            + [fast.replay.leaves.clone(), fast.replay.block_sums.clone(), fast.stats.clone()])


def _log_order(agent: DQNAgent, fast: FastUpdater, log: list) -> None:
    """Record the order of the replay draws, the losses and the gradient steps of ``fast``."""
    sample, loss, apply = fast._sample, agent.algorithm.loss, agent.algorithm.apply_gradients
    fast._sample = lambda *a: (log.append("sample"), sample(*a))[1]
    agent.algorithm.loss = lambda *a: (log.append("loss"), loss(*a))[1]
    agent.algorithm.apply_gradients = lambda *a, **k: (log.append("step"), apply(*a, **k))[1]


@pytest.mark.parametrize("distributional", [True, False])
def test_prefetched_batches_give_the_updates_made_in_order(distributional):
    """prefetch_next_batch draws update i+1's batch beside update i, after i's priority update,
    so it sees the priorities an in-order draw sees. Without noisy nets (their draws would come in
    another order of the one random stream) a replay's updates must equal those made in order:
    weights, optimizer state, priorities and statistics, bitwise on CPU."""
    results, orders = {}, {}
    for prefetch in (False, True):
        agent, fast = _agent_with_data(distributional=distributional, noisy=False,
                                       prefetch_next_batch=prefetch)
        orders[prefetch] = []
        _log_order(agent, fast, orders[prefetch])
        torch.manual_seed(1)
        fast._steps(4)
        results[prefetch] = _learner_state(agent, fast)
    assert orders[False] == ["sample", "loss", "step"] * 4
    assert orders[True] == (["sample"] + ["loss", "sample", "step"] * 3  # drawn before the step
                            + ["loss", "step"])
    assert len(results[True]) == len(results[False])
    for a, b in zip(results[False], results[True]):
        assert torch.equal(a, b)


def test_prefetch_draws_fresh_noise_for_every_update():
    """With noisy nets the next update's noise is drawn after the backward pass that read the
    current one: every update of a replay acts on its own noise, in both networks."""
    agent, fast = _agent_with_data(noisy=True, prefetch_next_batch=True)
    layers = agent.online.advantage.fc1, agent.target.advantage.fc1
    seen = []
    loss = agent.algorithm.loss
    agent.algorithm.loss = lambda *a: (seen.append([l.eps_out.clone() for l in layers]),
                                       loss(*a))[1]
    fast._steps(4)
    assert len(seen) == 4
    for net in range(2):
        for i in range(4):
            for j in range(i + 1, 4):
                assert not torch.equal(seen[i][net], seen[j][net])
    assert torch.isfinite(fast.stats).all()


@pytest.mark.parametrize("layout", ["plain", "space_to_depth"])
def test_samples_holding_the_first_conv_input_give_the_same_updates(layout):
    """sample_conv_input moves the frames' conversion into the replay sampling (which the prefetch
    runs beside the previous backward pass): the samples hold the first conv's input, and a
    replay's updates equal those from uint8 samples bitwise on CPU (weights, Adam state,
    priorities, statistics)."""
    from carla_rl.learner.agent_config import NetworkConfig

    network = NetworkConfig(conv_channels=[4, 4], conv_kernels=[4, 2], conv_strides=[2, 2],
                            vector_hidden=[16], hidden_size=32)  # 8x8 -> 3x3 -> 1x1
    results, batches = {}, {}
    for converted in (False, True):
        s2d = layout == "space_to_depth"
        agent, fast = _agent_with_data(network=network, noisy=False, prefetch_next_batch=True,
                                       sample_conv_input=converted, channels_last=s2d,
                                       space_to_depth=s2d, space_to_depth_later_convs=True)
        assert agent.online.encoder.space_to_depth_layers == [s2d, s2d]
        torch.manual_seed(1)
        batches[converted] = fast._sample(16, fast.beta)[1]
        torch.manual_seed(1)
        fast._steps(4)
        results[converted] = _learner_state(agent, fast)
    assert batches[False].frames.dtype == torch.uint8
    for field in ("frames", "next_frames"):
        got = getattr(batches[True], field)
        assert got.dtype == torch.float32
        expected = first_conv_input(agent.online.encoder, getattr(batches[False], field))
        assert got.shape == expected.shape and torch.equal(got, expected)
    if layout == "space_to_depth":
        assert batches[True].frames.shape[1] == 2 * 2 * 2  # 2 frames in 2x2 blocks
    for a, b in zip(results[False], results[True]):
        assert torch.equal(a, b)
