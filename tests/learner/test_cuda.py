"""CUDA-only checks (skipped without a GPU): graph-captured updates and the benchmark."""

from pathlib import Path

import numpy as np
import pytest
import torch

from carla_rl.learner.dqn_agent import DQNAgent

from helpers import TINY_SPEC, tiny_config

CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"

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


def test_benchmark_on_cuda_measures_the_shipped_preset_beside_eager():
    """By default `bench learner --device cuda` measures config/agent_cuda.yaml over agent.yaml (batch
    256, compiled, 8 updates per graph replay; compiling takes minutes) as training calls it, and the
    eager path, in one run."""
    from carla_rl.learner.agent_config import load_device_agent_config
    from carla_rl.bench.learner import run_learner_benchmark

    result = run_learner_benchmark("cuda", seconds=2.0, capacity=5000, act_repeats=2)
    assert set(result["variants_updates_per_s"]) == {"eager", "shipped"}, result["variant_errors"]
    preset = load_device_agent_config(CONFIG_DIR, "cuda")
    assert result["batch_size"] == preset.batch_size == 256
    assert result["shipped_config"]["updates_per_graph"] == preset.updates_per_graph > 1
    assert result["shipped_config"]["compile"] and result["shipped_config"]["cuda_graphs"]
    assert result["shipped_updates_per_s"] > 5 * result["eager_updates_per_s"] > 0


def test_named_variants_on_cuda():
    from carla_rl.bench.learner import run_learner_benchmark

    result = run_learner_benchmark("cuda", batch_size=32, seconds=1.0, capacity=5000, act_repeats=2,
                                   variants=("eager", "device_eager", "graph", "graph_bf16_x8_pf"))
    assert not result["variant_errors"]
    assert result["fast_path"] not in ("eager", "device_eager")


def test_acting_goes_on_while_the_learner_warms_up(monkeypatch):
    """The warm-up before the capture (minutes of compiling with the CUDA preset) runs while another
    thread acts: acting waits only for the capture itself."""
    import threading

    from carla_rl.learner.fast_update import FastUpdater

    agent = filled_cuda_agent(tiny_config(learning_starts=32, cuda_graphs=True))
    entered, release = threading.Event(), threading.Event()
    steps = FastUpdater._steps

    def held_steps(self, count):
        entered.set()
        assert release.wait(60)
        steps(self, count)

    monkeypatch.setattr(FastUpdater, "_steps", held_steps)
    learner = threading.Thread(target=agent.update)
    learner.start()
    try:
        assert entered.wait(60)  # the learner is inside its first warm-up update
        assert agent.capture_lock.acquire(timeout=5.0)  # not held by the warm-up
        agent.capture_lock.release()
        rng = np.random.default_rng(2)
        result = agent.act(rng.integers(0, 256, (2, 2, 8, 8), dtype=np.uint8),
                           np.zeros((2, 3), np.float32), explore=False)
        assert result.actions.shape == (2,)
    finally:
        release.set()
        learner.join(120)
    assert agent.updates == 1


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



def test_prefetched_batches_in_a_captured_replay_match_the_updates_in_order():
    """prefetch_next_batch on the graph path with side streams: a replay of 4 updates, each after
    the first drawing its batch beside the previous backward pass, gives the weights and
    priorities of the same updates drawn in order (noisy nets off: the same random draws)."""
    results = []
    for prefetch in (False, True):
        cfg = tiny_config(learning_starts=32, cuda_graphs=True, updates_per_graph=4, noisy=False,
                          parallel_next_passes=True, prefetch_next_batch=prefetch,
                          target_update_interval=8)
        agent, state = state_after_captured_replays(cfg)
        assert agent._fast.prefetch == prefetch
        results.append(state)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def state_after_captured_replays(cfg, replays: int = 3) -> tuple[DQNAgent, list[torch.Tensor]]:
    """(agent, its online weights and replay priorities) after warm-up, capture and ``replays``
    graph replays from seed 3 (each replay's statistics finite)."""
    torch.manual_seed(3)
    agent = filled_cuda_agent(cfg)
    while agent._fast is None or agent._fast.graph is None:
        agent.update()
    for _ in range(replays):
        stats = agent.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    torch.cuda.synchronize()
    return agent, ([p.detach().clone() for p in agent.online.parameters()]
                   + [agent._fast.replay.leaves.clone()])


def s2d_config(later_conv: bool = False, **overrides):
    """tiny_config with a first conv whose stride divides its kernel (4x4 stride 2 on 8x8); with
    ``later_conv`` the second conv's too (2x2 stride 2 on 3x3)."""
    from carla_rl.learner.agent_config import NetworkConfig

    cfg = tiny_config(**overrides)
    kernel, stride = (2, 2) if later_conv else (3, 1)
    cfg.network = NetworkConfig(conv_channels=[4, 8], conv_kernels=[4, kernel],
                                conv_strides=[2, stride], vector_hidden=[16], hidden_size=32)
    return cfg


@pytest.mark.parametrize("later_conv", [False, True])
@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_space_to_depth_graph_updates_and_values(precision, later_conv):
    cfg = s2d_config(later_conv, learning_starts=32, cuda_graphs=True, space_to_depth=True,
                     mixed_precision=precision)
    agent = filled_cuda_agent(cfg)
    assert agent.online.encoder.space_to_depth and agent.target.encoder.space_to_depth
    assert agent.online.encoder.space_to_depth_layers == [True, later_conv]
    for _ in range(8):  # 3 eager warm-up steps, capture, graph replays
        stats = agent.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    assert agent._fast.graph is not None
    plain = DQNAgent(TINY_SPEC, 3, s2d_config(later_conv, space_to_depth=False), device="cuda",
                     seed=0).online
    plain.load_state_dict(agent.online.state_dict())
    assert not plain.encoder.space_to_depth
    rng = np.random.default_rng(1)
    frames = torch.as_tensor(rng.integers(0, 256, (16, 2, 8, 8), dtype=np.uint8), device="cuda")
    vectors = torch.rand(16, 3, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(agent.online(frames, vectors, noise=False),
                                   plain(frames, vectors, noise=False), rtol=1e-2, atol=1e-2)


def test_compiled_clip_and_adam_match_the_fused_step():
    from carla_rl.learner.fast_algorithm import FastDQNAlgorithm
    from carla_rl.learner.networks import QNetwork

    torch.manual_seed(0)
    algorithms = []
    for compiled in (False, True):
        cfg = tiny_config(cuda_graphs=True, compile=compiled, compile_optimizer=compiled,
                          grad_clip_norm=1.0, lr=1e-3)
        net, target = (QNetwork(TINY_SPEC, 3, cfg).cuda() for _ in range(2))
        if algorithms:
            net.load_state_dict(algorithms[0].network.state_dict())
        algorithms.append(FastDQNAlgorithm(net, target, cfg, torch.device("cuda")))
    assert algorithms[1].compiled_optimizer and not algorithms[0].compiled_optimizer
    for step in range(3):
        grads = [torch.randn_like(p) * (10.0 if step == 1 else 0.01)  # clipped on step 1
                 for p in algorithms[0].network.parameters()]
        norms = []
        for algorithm in algorithms:
            for p, g in zip(algorithm.network.parameters(), grads):
                p.grad = g.clone()
            if algorithm.compiled_optimizer:
                norms.append(algorithm._clip_and_step())
            else:
                norms.append(algorithm._clip_and_step_eager(use_scaler=True))
        torch.testing.assert_close(norms[1], norms[0])
        for a, b in zip(algorithms[1].network.parameters(), algorithms[0].network.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_parallel_next_passes_on_side_streams_match_the_serial_loss(precision, grouped):
    """The two next-state passes forked onto side streams (and joined), or as one paired pass on
    one side stream, give the serial loss, priorities and gradients on the GPU; the captured
    graph with them runs and learns."""
    from carla_rl.learner.fast_update import FastUpdater

    cfg = s2d_config(learning_starts=32, cuda_graphs=True, space_to_depth=True,
                     parallel_next_passes=True, grouped_next_passes=grouped,
                     mixed_precision=precision)
    agent = filled_cuda_agent(cfg)
    algorithm = agent.algorithm
    assert algorithm.parallel_next_passes and algorithm._next_streams is not None
    assert algorithm.grouped_next_passes == grouped
    fast = FastUpdater(agent, use_graph=False)
    _, batch, _ = fast.replay.sample(cfg.batch_size, torch.tensor(0.4, device="cuda"))
    results = {}
    for parallel in (False, True):
        algorithm.parallel_next_passes = parallel
        agent.online.zero_grad(set_to_none=True)
        loss, priorities, td_abs, q_taken = algorithm.loss(batch)
        loss.backward()
        results[parallel] = [loss.detach(), priorities, td_abs, q_taken] + \
            [p.grad.clone() for p in agent.online.parameters()]
    torch.cuda.synchronize()
    tolerance = 1e-4 if precision == "off" else 2e-2
    for a, b in zip(results[False], results[True]):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)
    agent = filled_cuda_agent(cfg)  # a fresh one: the graph captured in its own first updates
    before = [p.detach().clone() for p in agent.online.parameters()]
    for _ in range(8):  # 3 eager warm-up steps, capture, graph replays
        stats = agent.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    assert agent._fast.graph is not None
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters()))


@pytest.mark.parametrize("fast_options", [{"parallel_next_passes": False},
                                          {"parallel_next_passes": True}])
def test_fully_compiled_graph_path_draws_fresh_samples_and_noise_on_every_replay(fast_options):
    """compile + compile_optimizer/replay/noise with space_to_depth, bf16, with and without the
    parallel next passes: the captured graph must still draw new samples and new noise on each
    replay (inductor's RNG under capture)."""
    from carla_rl.learner.fast_update import FastUpdater

    cfg = s2d_config(learning_starts=32, cuda_graphs=True, compile=True, space_to_depth=True,
                     compile_optimizer=True, compile_replay=True, compile_noise=True,
                     mixed_precision="bf16", **fast_options)
    agent = filled_cuda_agent(cfg)
    for _ in range(6):
        stats = agent.update()
        assert np.isfinite([stats.loss, stats.mean_q, stats.grad_norm]).all()
    assert agent._fast.graph is not None and agent.algorithm.compiled_optimizer
    eps = agent.online.advantage.fc1.eps_in
    before = [p.detach().clone() for p in agent.online.parameters()]
    noises = []
    for _ in range(2):
        agent.update()
        torch.cuda.synchronize()
        noises.append(eps.clone())
    assert not torch.equal(noises[0], noises[1])
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.online.parameters()))
    # the compiled sampler itself, captured and replayed
    fast = FastUpdater(agent, use_graph=True)
    beta = torch.tensor(0.4, device="cuda")
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fast._sample(16, beta)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        slots, batch, valid = fast._sample(16, beta)
    draws = []
    for _ in range(3):
        graph.replay()
        torch.cuda.synchronize()
        draws.append(slots.clone())
    assert bool(valid.all())
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    # sample_conv_input (default): the compiled sampler hands out the first conv's bf16 blocks
    assert batch.frames.dtype == batch.next_frames.dtype == torch.bfloat16
    assert batch.frames.shape == (16, 2 * 2 * 2, 4, 4)  # 2 frames in 2x2 blocks of the 8x8 frames


@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_samples_holding_the_first_conv_input_give_the_same_graph_updates(precision):
    """sample_conv_input on the graph path (space-to-depth, side streams, prefetch): a captured
    replay's updates match those made from uint8 samples (noisy nets off: the same draws)."""
    results = []
    for converted in (False, True):
        cfg = s2d_config(True, learning_starts=32, cuda_graphs=True, updates_per_graph=4,
                         noisy=False, space_to_depth=True, parallel_next_passes=True,
                         prefetch_next_batch=True, sample_conv_input=converted,
                         target_update_interval=8, mixed_precision=precision)
        agent, state = state_after_captured_replays(cfg)
        expected = torch.bfloat16 if converted and precision == "bf16" \
            else torch.float32 if converted else torch.uint8
        assert agent._fast.replay.gather(torch.zeros(2, dtype=torch.int64, device="cuda"),
                                         torch.ones(2, device="cuda")).frames.dtype == expected
        results.append(state)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("precision", ["off", "bf16"])
def test_acting_copy_on_cuda_matches_the_learner_network(precision):
    """The policy node's acting copy (FrozenQNetwork, NHWC on CUDA) picks from the same Q-values as the
    learner's module on the GPU (bf16: within bf16 rounding)."""
    import copy

    from carla_rl.learner.dqn_agent import DQNPolicy

    cfg = tiny_config(learning_starts=32, cuda_graphs=True, mixed_precision=precision)
    agent = filled_cuda_agent(cfg)
    for _ in range(3):
        agent.update()
    actor = DQNPolicy(copy.deepcopy(agent.online), cfg, agent.device, np.random.default_rng(0))
    actor.load_weights(agent.online.state_dict())
    assert actor._frozen  # the acting path under test, not the module fallback
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (16, 2, 8, 8), dtype=np.uint8)
    vectors = rng.random((16, 3), dtype=np.float32)
    tolerance = 1e-4 if precision == "off" else 5e-2
    for noise in (True, False):
        expected = agent.policy.q_values(frames, vectors, noise=noise)
        got = actor.q_values(frames, vectors, noise=noise)
        assert got.device.type == "cuda"
        torch.testing.assert_close(got, expected, rtol=tolerance, atol=tolerance)


def test_profile_writes_a_chrome_trace_of_the_kernels(tmp_path):
    from carla_rl.bench.learner import profile_update

    x = torch.randn(256, 256, device="cuda")
    calls = []

    def step():
        calls.append(1)
        torch.mm(x, x)

    trace = tmp_path / "step.trace.json"
    profile = profile_update(step, lambda: len(calls), torch.device("cuda"), calls=4, trace_path=trace)
    assert profile["kernels_per_update"] >= 1
    import json
    events = json.loads(trace.read_text())["traceEvents"]
    assert sum(1 for e in events if e.get("cat") == "kernel") >= 4


def test_flat_optimizer_on_the_graph_path_matches_the_per_parameter_step_and_resumes(tmp_path):
    """flat_optimizer (parameters, gradients and moments in flat buffers, clipping + Adam
    compiled over whole buffers) gives the compiled per-parameter step's weights inside the
    captured graph; a checkpoint of it restores into the flat buffers."""
    from carla_rl.learner.checkpoint import restore_checkpoint, save_checkpoint

    agents = []
    for flat in (False, True):
        cfg = s2d_config(learning_starts=32, cuda_graphs=True, compile=True,
                         compile_optimizer=True, flat_optimizer=flat, grad_clip_norm=1.0)
        agent = filled_cuda_agent(cfg)
        for _ in range(6):  # 3 eager warm-up updates, then graph replays
            stats = agent.update()
            assert np.isfinite([stats.loss, stats.grad_norm]).all()
        assert agent._fast.graph is not None
        assert (agent.algorithm.flat_adam is not None) == flat
        assert agent.algorithm._next_streams is not None  # the serial first warm-up is over
        agents.append(agent)
    torch.cuda.synchronize()
    for a, b in zip(agents[1].online.parameters(), agents[0].online.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
    flat_agent = agents[1]
    assert flat_agent.algorithm.flat_adam.is_flat()  # the graph replays kept the views

    path = save_checkpoint(flat_agent, tmp_path / "flat.ckpt")
    cfg = s2d_config(learning_starts=32, cuda_graphs=True, compile=True,
                     compile_optimizer=True, flat_optimizer=True, grad_clip_norm=1.0)
    restored = filled_cuda_agent(cfg)
    restored.update()  # some state of its own first: the load must replace it
    restore_checkpoint(restored, path)
    flat = restored.algorithm.flat_adam
    assert flat.is_flat()
    base = flat.exp_avg.untyped_storage().data_ptr()
    for p, q in zip(restored.online.parameters(), flat_agent.online.parameters()):
        assert torch.equal(p, q)
        mine, saved = restored.algorithm.optimizer.state[p], flat_agent.algorithm.optimizer.state[q]
        assert mine["exp_avg"].untyped_storage().data_ptr() == base
        for key in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(mine[key], saved[key]), key
    before = [p.detach().clone() for p in restored.online.parameters()]
    for _ in range(4):
        stats = restored.update()
        assert np.isfinite([stats.loss, stats.grad_norm]).all()
    torch.cuda.synchronize()
    assert any(not torch.equal(a, b) for a, b in zip(before, restored.online.parameters()))
    assert float(flat.steps[0]) == float(flat_agent.algorithm.flat_adam.steps[0]) + 4
