"""Learner throughput benchmark: updates/s of the fast path vs the eager path, act latency.

``run_learner_benchmark(device, batch_size, seconds, preset)`` fills a replay memory with
synthetic interleaved episodes, then measures in the same run

* ``eager``         the straightforward path (``DQNAgent.update``: numpy sampling on the host,
                    pinned copy to the device, one stats sync per update),
* ``device_eager``  sampling on the device (:class:`DeviceReplay`), eager kernels,
* ``graph``         the whole update step captured in one CUDA graph (CUDA only),
* ``graph_bf16``    the same under bf16 autocast (CUDA only),
* ``..._xK``        K updates captured back to back per graph replay (``updates_per_graph``),
                    ``..._nchw`` without ``channels_last``, ``..._sep`` without
                    ``merge_online_passes`` (to measure what each is worth), ``..._s2d``
                    with ``space_to_depth`` (``..._s2dl`` also for later convs),
                    ``..._par`` with ``parallel_next_passes`` (``..._grp`` also
                    ``grouped_next_passes``), ``..._cbench`` with ``cudnn_benchmark``,
                    ``..._pf`` with ``prefetch_next_batch`` (with ``_xK``), ``..._sci``
                    with ``sample_conv_input``, ``..._clw`` with the space-to-depth convs'
                    weights channels-last (as before; now kept in plain order); with compile:
                    ``..._copt`` also compiles clipping + Adam (``..._flat`` over flat
                    buffers), ``..._crep`` the replay sampling, ``..._cnoise`` the noise
                    resampling, ``..._maxat`` uses mode max-autotune-no-cudagraphs,
                    ``..._combo`` inductor's combo kernels (``compile_combo_kernels``);
                    ``..._aggr`` / ``..._nosplit`` / ``..._cdt`` / ``..._noapw`` inductor's
                    aggressive fusion / unsplit reductions / coordinate-descent tuning of its
                    Triton kernels' launch configs / pointwise kernels' launch configs from
                    its heuristics instead of timed per process (:data:`INDUCTOR_FLAGS`,
                    patched around the variant; dynamo is reset before each compiled variant),
* ``compile``       ``torch.compile`` of the loss with on-device sampling (CUDA only,
                    opt-in through ``variants``: compilation takes a minute or more), and
                    ``graph_compile`` / ``graph_compile_bf16``: the compiled loss inside the
                    captured graph,

and reports the fastest as ``updates_per_s`` / ``fast_path`` (on CPU: ``eager``). Command line::

    python -m carla_rl.learner.learner_benchmark --device cuda --batch-size 256 --seconds 5
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from carla_rl.learner.agent_config import AgentConfig, ObservationSpec, load_agent_config
from carla_rl.learner.dqn_agent import DQNAgent, DQNPolicy
from carla_rl.learner.fast_update import FastUpdater
from carla_rl.learner.networks import QNetwork

DEFAULT_VARIANTS = ("eager", "device_eager", "graph", "graph_bf16", "graph_bf16_x8")
CUDA_ONLY_FLAGS = ("graph", "bf16", "compile")
ACT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
# variant flag -> inductor config setting: aggressive fusion, reductions not split into two
# kernels, coordinate-descent tuning of the generated kernels' block sizes / warps, pointwise
# kernels' launch configs from heuristics instead of timing. The max-autotune modes
# (``_maxat``) already include coordinate-descent tuning (``list_mode_options``): ``_cdt``
# adds it only without them.
INDUCTOR_FLAGS = {"aggr": ("aggressive_fusion", True),
                  "nosplit": ("split_reductions", False), "cdt": ("coordinate_descent_tuning", True),
                  "noapw": ("triton.autotune_pointwise", False)}
FRAME_POOL = 64  # distinct random frames cycled through the synthetic episodes


def fill_synthetic(agent: DQNAgent, transitions: int, num_envs: int, episode_length: int,
                   seed: int) -> None:
    """Interleaved synthetic episodes (random frames/rewards, a truncation every
    ``episode_length`` steps, a termination now and then)."""
    spec = agent.spec
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (FRAME_POOL, spec.height, spec.width), dtype=np.uint8)
    steps = [0] * num_envs
    ended = [True] * num_envs
    for t in range(transitions // num_envs + 1):
        for env in range(num_envs):
            frame = pool[(t * num_envs + env) % FRAME_POOL]
            vector = rng.random(spec.vector_size, dtype=np.float32)
            if ended[env]:
                agent.observe(env, frame, vector, 0.0, False, False, True)
                steps[env] = 0
            else:
                steps[env] += 1
                terminated = bool(rng.random() < 1.0 / episode_length)
                truncated = steps[env] >= episode_length
                agent.observe(env, frame, vector, float(rng.normal()), terminated, truncated,
                              False)
                if terminated or truncated:
                    ended[env] = True
                    continue
            ended[env] = False
            agent.record_action(env, int(rng.integers(0, agent.action_size)))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], Any], updates: Callable[[], int], seconds: float,
          device: torch.device, warmup: int) -> float:
    """Updates per second of ``step`` (which may do several updates per call), counted by the
    ``updates`` counter, after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    calls = 0
    first = updates()
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        step()
        calls += 1
        if calls % 16 == 0 and time.perf_counter() >= deadline:
            break
    _sync(device)
    return (updates() - first) / (time.perf_counter() - start)


def profile_update(step: Callable[[], Any], updates: Callable[[], int], device: torch.device,
                   calls: int = 20, top: int = 15,
                   trace_path: str | Path | None = None) -> dict[str, Any]:
    """Where an update's time goes: kernels launched and GPU time per update, and the ``top``
    kernels by total GPU time (torch.profiler; CUDA only). ``trace_path``: also write the
    profiled calls as a Chrome trace (kernels with their streams and times)."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    _sync(device)
    first = updates()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(calls):
            step()
        _sync(device)
    if trace_path is not None:
        prof.export_chrome_trace(str(trace_path))
    count = max(1, updates() - first)
    kernels = [e for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]
    by_name: dict[str, list[float]] = {}
    for event in kernels:
        entry = by_name.setdefault(event.name, [0, 0.0])
        entry[0] += 1
        entry[1] += event.device_time
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]
    return {
        "updates_profiled": count,
        "kernels_per_update": len(kernels) / count,
        "gpu_busy_us_per_update": sum(e.device_time for e in kernels) / count,
        "top_kernels": [{"name": name[:120], "calls_per_update": n / count,
                         "us_per_update": t / count} for name, (n, t) in ranked],
    }


def _act_latency(agent: DQNAgent, repeats: int, acting_copy: bool) -> dict[str, float]:
    """Median ms per batched action selection, by batch size: through an acting copy as the policy
    node acts (:class:`FrozenQNetwork`, noise folded), or through the learner's QNetwork module."""
    spec = agent.spec
    if acting_copy:
        policy = DQNPolicy(copy.deepcopy(agent.online), agent.config, agent.device, agent.act_rng)
        policy.load_weights(agent.online.state_dict())

        def act(frames, vectors):
            return policy.act(frames, vectors, epsilon=0.0, noise=True, action_mask=None)
    else:
        def act(frames, vectors):
            return agent.act(frames, vectors, explore=False)
    rng = np.random.default_rng(0)
    out = {}
    for batch in ACT_BATCHES:
        frames = rng.integers(0, 256, (batch, spec.frame_stack, spec.height, spec.width),
                              dtype=np.uint8)
        vectors = rng.random((batch, spec.vector_size), dtype=np.float32)
        for _ in range(3):
            act(frames, vectors)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            act(frames, vectors)  # returns numpy: includes the sync
            times.append(time.perf_counter() - start)
        out[str(batch)] = 1000.0 * float(np.median(times))
    return out


def _inductor_settings(flags: set[str]):
    """A context with the inductor config settings that ``flags`` name (INDUCTOR_FLAGS); inductor is
    imported (about 2 s) only when one is named."""
    settings = {key: value for flag, (key, value) in INDUCTOR_FLAGS.items() if flag in flags}
    if not settings:
        return contextlib.nullcontext()
    import torch._inductor.config as inductor_config

    return inductor_config.patch(settings)


@contextlib.contextmanager
def _channels_last_block_weights():
    """For the ``..._clw`` A/B only: agents built in this context keep the weights of their
    space-to-depth convs channels-last (as before commit 6e2fc61) instead of in plain order."""
    use_space_to_depth = QNetwork.use_space_to_depth
    QNetwork.use_space_to_depth = lambda network, later_convs=False: use_space_to_depth(
        network, later_convs, keep_contiguous_weights=False)
    try:
        yield
    finally:
        QNetwork.use_space_to_depth = use_space_to_depth


def _progress(line: str) -> None:
    """One line per measured variant on stderr (stdout carries the JSON): a run stopped early
    still shows what it measured."""
    print(line, file=sys.stderr, flush=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def run_learner_benchmark(device: str, batch_size: int, seconds: float,
                          preset: str | None = None, capacity: int = 50_000,
                          vector_size: int = 16, action_size: int = 6, num_envs: int = 4,
                          episode_length: int = 500, variants: tuple[str, ...] | None = None,
                          act_repeats: int = 50, config: AgentConfig | None = None,
                          profile: bool = False, profile_top: int = 15,
                          trace_dir: str | Path | None = None,
                          config_path: str | Path | None = None,
                          seed: int = 0) -> dict[str, Any]:
    """Measure the learner; see the module docstring. ``seconds`` is per variant. The agent
    config is ``config``, else the ``agent:`` block of ``config_path``, else the defaults;
    ``preset`` replaces its network; batch size, capacity and the fast-path switches are set
    here per variant."""
    dev = torch.device(device)
    if config is not None:
        base = config
    elif config_path is not None:
        base = load_agent_config(config_path)
    else:
        base = AgentConfig()
    if preset is not None:
        base = base.with_network_preset(preset)
    base = dataclasses.replace(base, batch_size=batch_size, learning_starts=0,
                               replay=dataclasses.replace(base.replay, capacity=capacity),
                               cuda_graphs=False, compile=False)
    spec = ObservationSpec(4, 84, 84, vector_size)
    variants = tuple(variants if variants is not None else DEFAULT_VARIANTS)
    if dev.type != "cuda":
        variants = tuple(v for v in variants if not set(v.split("_")) & set(CUDA_ONLY_FLAGS))

    eager = DQNAgent(spec, action_size, base, device=dev, seed=seed)
    fill_start = time.perf_counter()
    fill_synthetic(eager, capacity, num_envs, episode_length, seed)
    fill_s = time.perf_counter() - fill_start

    if profile and trace_dir:
        Path(trace_dir).mkdir(parents=True, exist_ok=True)
    rates: dict[str, float] = {}
    errors: dict[str, str] = {}
    profiles: dict[str, Any] = {}
    device_bytes = float("nan")  # replay mirror on the device (fast paths)
    for name in variants:
        try:
            if name == "eager":
                agent = eager
                rates[name] = _rate(agent.update, lambda a=agent: a.updates, seconds, dev,
                                    warmup=3)
                _progress(f"{name}: {rates[name]:.1f} updates/s")
                continue
            flags = set(name.split("_"))  # e.g. graph_compile_bf16, graph_bf16_x8
            per_graph = [int(f[1:]) for f in flags if f[:1] == "x" and f[1:].isdigit()]
            per_replay = per_graph[0] if per_graph else 1
            # hard target copies land on replay boundaries: the interval rounded up to a multiple
            interval = -(-base.target_update_interval // per_replay) * per_replay
            cfg = dataclasses.replace(base, cuda_graphs="graph" in flags,
                                      compile="compile" in flags,
                                      updates_per_graph=per_replay,
                                      target_update_interval=interval,
                                      prefetch_next_batch="pf" in flags,
                                      sample_conv_input="sci" in flags,
                                      channels_last="nchw" not in flags,
                                      merge_online_passes="sep" not in flags,
                                      space_to_depth="s2d" in flags or "s2dl" in flags,
                                      space_to_depth_later_convs="s2dl" in flags,
                                      parallel_next_passes="par" in flags,
                                      grouped_next_passes="grp" in flags,
                                      cudnn_benchmark="cbench" in flags,
                                      compile_optimizer="copt" in flags,
                                      compile_combo_kernels="combo" in flags,
                                      flat_optimizer="flat" in flags,
                                      compile_replay="crep" in flags,
                                      compile_noise="cnoise" in flags,
                                      compile_mode="max-autotune-no-cudagraphs"
                                      if "maxat" in flags else "default",
                                      mixed_precision="bf16" if "bf16" in flags
                                      else base.mixed_precision)
            cfg.validate()
            if dev.type == "cuda":  # process-wide; the agent turns it on for ..._cbench only
                torch.backends.cudnn.benchmark = False
            if "compile" in flags:
                # Dynamo keeps compiled code per Python function, and inductor settings are not
                # among its guards: without a reset a variant that differs from an earlier one
                # only in INDUCTOR_FLAGS would run the earlier one's kernels. (Inductor's own
                # on-disk cache is keyed by its settings and still serves repeats.)
                torch._dynamo.reset()
            with _inductor_settings(flags):  # this variant's compilations only
                with _channels_last_block_weights() if "clw" in flags \
                        else contextlib.nullcontext():
                    agent = DQNAgent(spec, action_size, cfg, device=dev, seed=seed)
                agent.replay = eager.replay  # share the filled host ring
                agent.env_steps = eager.env_steps
                fast = FastUpdater(agent, use_graph="graph" in flags)
                device_bytes = fast.replay.nbytes / capacity
                step = (lambda f=fast: f.update(with_stats=False))
                counter = (lambda a=agent: a.updates)
                # warm-up covers the eager steps before capture (up to 3 + updates_per_graph - 1)
                rates[name] = _rate(step, counter, seconds, dev,
                                    warmup=4 + cfg.updates_per_graph)
                _progress(f"{name}: {rates[name]:.1f} updates/s")
                if profile and dev.type == "cuda":
                    trace = Path(trace_dir) / f"{name}.trace.json" if trace_dir else None
                    profiles[name] = profile_update(step, counter, dev, top=profile_top,
                                                    trace_path=trace)
        except Exception as exc:  # noqa: BLE001 - report the variant as failed, keep going
            where = traceback.extract_tb(exc.__traceback__)[-3:]  # the innermost frames
            errors[name] = f"{type(exc).__name__}: {exc} (at " + "; ".join(
                f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in where) + ")"
            _progress(f"{name}: failed: {errors[name]}")
    best = max(rates, key=rates.get) if rates else "none"
    eager_rate = rates.get("eager", float("nan"))
    result = {
        "device": _device_name(dev),
        "torch": torch.__version__,
        "batch_size": batch_size,
        "preset": preset or "config",
        "capacity": capacity,
        "fill_seconds": fill_s,
        "fast_path": best,
        "updates_per_s": rates.get(best, float("nan")),
        "eager_updates_per_s": eager_rate,
        "speedup_vs_eager": rates.get(best, float("nan")) / eager_rate,
        "variants_updates_per_s": rates,
        "variant_errors": errors,
        "bytes_per_transition": eager.replay.bytes_per_transition,
        "device_replay_bytes_per_transition": device_bytes,
        "act_latency_ms": _act_latency(eager, act_repeats, acting_copy=True),  # the policy node's path
        "module_act_latency_ms": _act_latency(eager, act_repeats, acting_copy=False),
    }
    if profiles:
        result["profile"] = profiles
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0, help="per variant")
    parser.add_argument("--preset", default=None, help="network preset: cpu | nature")
    parser.add_argument("--capacity", type=int, default=50_000)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated: eager, device_eager, graph, graph_bf16, "
                             "compile, graph_compile, graph_compile_bf16; a suffix _xK "
                             "captures K updates per graph (e.g. graph_bf16_x8)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: keep)")
    parser.add_argument("--config", default=None, help="params file with a dqn_policy.agent block")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each device variant's kernels (CUDA only)")
    parser.add_argument("--profile-top", type=int, default=15,
                        help="kernels listed per profiled variant")
    parser.add_argument("--trace-dir", default=None,
                        help="with --profile: write each variant's Chrome trace here")
    args = parser.parse_args(argv)
    if args.trace_dir and not args.profile:
        parser.error("--trace-dir needs --profile")
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run_learner_benchmark(args.device, args.batch_size, args.seconds, args.preset,
                                   capacity=args.capacity, config_path=args.config,
                                   profile=args.profile, profile_top=args.profile_top,
                                   trace_dir=args.trace_dir,
                                   variants=tuple(v for v in args.variants.split(",") if v))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
