"""Learner throughput benchmark: updates/s of the shipped configuration vs the eager path, act latency.

``run_learner_benchmark(device, ...)`` fills a replay memory with synthetic interleaved episodes,
then measures in the same run

* ``shipped``       the configuration a run on ``device`` trains with: ``config/agent.yaml`` with the
                    device's preset over it (``agent_cuda.yaml`` on CUDA), called as training calls
                    it (``DQNAgent.update``: on CUDA ``updates_per_graph`` updates per graph replay
                    and one stats sync per call), at the config's batch size unless one is given,
* ``eager``         the reference update (:class:`~carla_rl.learner.algorithm.DQNAlgorithm`) on the
                    same batch size: ``DQNAgent.update`` with no fast path (numpy sampling on the
                    host, pinned copy to the device, one stats sync per update),

and on request (``variants``) the fast-path switches one by one, for A/Bs: ``device_eager``
(sampling on the device, eager kernels), or ``graph`` plus flags, each turning one switch on
(:data:`SWITCH_FLAGS`; ``compile``, ``bf16`` and ``maxat`` for ``compile_mode``
max-autotune-no-cudagraphs; ``_xK`` for K updates per graph replay). The switches a flag names
are on, all others off: ``graph_compile_bf16_s2d_copt_crep_cnoise_par_grp_maxat_x8_pf_flat_s2dl_combo_sci``
is the CUDA preset. The fastest is reported as ``updates_per_s`` / ``fast_path``. Command line::

    python -m carla_rl.bench.learner --device cuda --seconds 5
"""

from __future__ import annotations

import argparse
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

from carla_rl.contract.config import ConfigError, default_config_dir, device_type
from carla_rl.learner.agent_config import (FAST_PATH_FIELDS, AgentConfig, ObservationSpec,
                                           load_device_agent_config)
from carla_rl.learner.dqn_agent import DQNAgent, DQNPolicy
from carla_rl.learner.fast_update import FastUpdater

DEFAULT_VARIANTS = ("eager", "shipped")
CUDA_ONLY_FLAGS = ("graph", "bf16", "compile")
ACT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
# variant flag -> the boolean switch of AgentConfig it turns on (off where not named)
SWITCH_FLAGS = {"s2d": "space_to_depth", "s2dl": "space_to_depth_later_convs",
                "par": "parallel_next_passes", "grp": "grouped_next_passes",
                "pf": "prefetch_next_batch", "sci": "sample_conv_input",
                "copt": "compile_optimizer", "flat": "flat_optimizer", "crep": "compile_replay",
                "cnoise": "compile_noise", "combo": "compile_combo_kernels"}
FRAME_POOL = 64  # distinct random frames cycled through the synthetic episodes
# the flags of variant names beside SWITCH_FLAGS and xK
OTHER_FLAGS = ("graph", "compile", "bf16", "maxat")
NAMED_VARIANTS = ("eager", "shipped", "device_eager")


def check_variant(name: str) -> None:
    """ConfigError unless ``name`` is a named variant or flags joined by '_' (see the module doc):
    a misspelt or removed flag would otherwise measure another variant under its name."""
    if name in NAMED_VARIANTS:
        return
    unknown = [flag for flag in name.split("_") if flag not in SWITCH_FLAGS
               and flag not in OTHER_FLAGS and not (flag[:1] == "x" and flag[1:].isdigit()
                                                    and int(flag[1:]) >= 1)]
    if unknown:
        raise ConfigError(f"benchmark variant {name!r}: unknown flag(s) {', '.join(map(repr, unknown))}; "
                          f"variants are {', '.join(NAMED_VARIANTS)} or flags joined by '_' from "
                          f"{', '.join(OTHER_FLAGS + tuple(SWITCH_FLAGS))} and xK (K updates per "
                          "graph replay)")


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


def _progress(line: str) -> None:
    """One line per measured variant on stderr (stdout carries the JSON): a run stopped early
    still shows what it measured."""
    print(line, file=sys.stderr, flush=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def variant_config(base: AgentConfig, name: str) -> AgentConfig:
    """``base`` with the fast-path switches of variant ``name`` (see the module doc): those its
    flags name on, all others off. A hard target-update interval is rounded up to a multiple of the
    updates per graph replay (copies land between replays)."""
    flags = set(name.split("_"))  # e.g. graph_compile_bf16, graph_bf16_x8
    per_graph = [int(f[1:]) for f in flags if f[:1] == "x" and f[1:].isdigit()]
    per_replay = per_graph[0] if per_graph else 1
    interval = -(-base.target_update_interval // per_replay) * per_replay
    switches = {field: flag in flags for flag, field in SWITCH_FLAGS.items()}
    switches["space_to_depth"] = bool(flags & {"s2d", "s2dl"})
    # NHWC (no flag of its own) on the graph variants only: device_eager stays the plain layout
    switches["channels_last"] = base.channels_last and "graph" in flags
    cfg = dataclasses.replace(base, **switches, cuda_graphs="graph" in flags,
                              compile="compile" in flags, updates_per_graph=per_replay,
                              target_update_interval=interval,
                              compile_mode="max-autotune-no-cudagraphs" if "maxat" in flags
                              else "default",
                              mixed_precision="bf16" if "bf16" in flags else "off")
    cfg.validate()
    return cfg


def eager_config(base: AgentConfig) -> AgentConfig:
    """``base`` for the reference update: no fast path (``cuda_graphs`` off), and its other
    fast-path switches as off as the reference is (no compile, fp32), so the config reads as what
    runs."""
    return dataclasses.replace(base, cuda_graphs=False, compile=False, mixed_precision="off",
                               updates_per_graph=1)


def run_learner_benchmark(device: str, batch_size: int | None = None, seconds: float = 5.0,
                          preset: str | None = None, capacity: int = 50_000,
                          vector_size: int = 16, action_size: int = 6, num_envs: int = 4,
                          episode_length: int = 500, variants: tuple[str, ...] | None = None,
                          act_repeats: int = 50, config: AgentConfig | None = None,
                          profile: bool = False, profile_top: int = 15,
                          trace_dir: str | Path | None = None,
                          config_dir: str | Path | None = None,
                          seed: int = 0) -> dict[str, Any]:
    """Measure the learner; see the module docstring. ``seconds`` is per variant. The shipped
    config is ``config``, else the one a run on ``device`` loads from ``config_dir`` (default: the
    package's config directory); ``preset`` replaces its network, ``batch_size`` (None: the
    config's) its batch size; every variant starts from it."""
    device_type(device)  # ConfigError: device must be cpu or cuda[:N]
    dev = torch.device(device)
    if config is not None:
        shipped = config
    else:
        shipped = load_device_agent_config(config_dir or default_config_dir(), device)
    if preset is not None:
        shipped = shipped.with_network_preset(preset)
    shipped = dataclasses.replace(shipped, batch_size=batch_size or shipped.batch_size,
                                  learning_starts=0,
                                  replay=dataclasses.replace(shipped.replay, capacity=capacity))
    shipped.validate()
    spec = ObservationSpec(4, 84, 84, vector_size)
    variants = tuple(variants if variants is not None else DEFAULT_VARIANTS)
    for name in variants:
        check_variant(name)
    if dev.type != "cuda":
        variants = tuple(v for v in variants if not set(v.split("_")) & set(CUDA_ONLY_FLAGS))

    eager = DQNAgent(spec, action_size, eager_config(shipped), device=dev, seed=seed)
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
                rates[name] = _rate(eager.update, lambda: eager.updates, seconds, dev, warmup=3)
                _progress(f"{name}: {rates[name]:.1f} updates/s")
                continue
            cfg = shipped if name == "shipped" else variant_config(shipped, name)
            if cfg.compile and dev.type == "cuda":
                torch._dynamo.reset()  # each compiled variant compiles its own code
            # shipped: the update the config selects on this device, as training builds it; a
            # variant: the fast path (its switches off where the variant names none)
            agent = DQNAgent(spec, action_size, cfg, device=dev, seed=seed,
                             fast_path=None if name == "shipped" else True)
            agent.replay = eager.replay  # share the filled host ring
            agent.env_steps = eager.env_steps
            if name == "shipped":  # as training calls it (stats included)
                step: Callable[[], Any] = agent.update
                updates_per_call = agent.updates_per_call
            else:
                fast = FastUpdater(agent, use_graph=cfg.cuda_graphs)
                device_bytes = fast.replay.nbytes / capacity
                step = (lambda f=fast: f.update(with_stats=False))
                updates_per_call = fast.steps_per_replay
            counter = (lambda a=agent: a.updates)
            # warm-up covers the eager steps before capture (up to 3 + updates_per_graph - 1)
            rates[name] = _rate(step, counter, seconds, dev, warmup=4 + updates_per_call)
            if agent._fast is not None:  # the shipped config's fast path
                device_bytes = agent._fast.replay.nbytes / capacity
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
    shipped_rate = rates.get("shipped", float("nan"))
    result = {
        "device": _device_name(dev),
        "torch": torch.__version__,
        "batch_size": shipped.batch_size,
        "preset": preset or "config",
        "capacity": capacity,
        "fill_seconds": fill_s,
        "shipped_updates_per_s": shipped_rate,
        "shipped_speedup_vs_eager": shipped_rate / eager_rate,
        "shipped_config": {name: getattr(shipped, name) for name in
                           ("batch_size", "target_update_interval", *FAST_PATH_FIELDS)},
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
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the device's shipped config")
    parser.add_argument("--seconds", type=float, default=5.0, help="per variant")
    parser.add_argument("--preset", default=None, help="network preset: cpu | nature")
    parser.add_argument("--capacity", type=int, default=50_000)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help="comma-separated: shipped, eager, device_eager, graph plus flags "
                             "(e.g. graph_compile_bf16_x8; see the module doc)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: keep)")
    parser.add_argument("--config-dir", default=None,
                        help="config directory (agent.yaml and the device presets)")
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
                                   capacity=args.capacity, config_dir=args.config_dir,
                                   profile=args.profile, profile_top=args.profile_top,
                                   trace_dir=args.trace_dir,
                                   variants=tuple(v for v in args.variants.split(",") if v))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
