"""``carla-rl bench graph``: end-to-end agent steps/s and latency through the ROS graph, next to the
same simulator + observation + reward + agent stepped in one process (the Gymnasium env path).

The graph is the real one (carla_rl.graph.build_graph) under the supervisor, learner paused unless
``learn``; every number is read from the nodes' /diagnostics (simulator ticks, publish -> command
latency quantiles) over a window that starts once every env is ticking (with ``learn``: and the learner has
made its first updates, after ``learning_starts`` env steps).
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

WARMUP_TICKS = 50
WARMUP_TIMEOUT_S = 120.0
LEARNER_START_TIMEOUT_S = 900.0  # --learn: learning_starts env steps (5,000) at the slowest graph, plus margin
SIMULATOR_NODES = ("embedded_simulator", "carla_client", "carla_bridge_adapter")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), or the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict:
    """Where a benchmark ran: host, cores, CPU model and the vector units torch uses (machines of one
    kind differ: docs/BENCHMARKS.md), and the date."""
    import torch

    return {"machine": f"{platform.node()} {os.cpu_count()} cpu {platform.processor() or platform.machine()}",
            "cpu_model": cpu_model(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "date": time.strftime("%Y-%m-%d")}


def run_inprocess(envs: int, seconds: float, phase: int, config_dir: Path) -> float:
    """Steps/s of N DrivingEnvs acted on in one batch by the same agent, learner paused."""
    from carla_rl.learner.agent_config import ObservationSpec, load_agent_config
    from carla_rl.learner.dqn_agent import DQNAgent
    from carla_rl.sim.driving_env import DrivingEnv

    import torch

    from carla_rl.contract.config import load_section
    from carla_rl.nodes.dqn_policy_node import PolicyNodeConfig

    policy_cfg = load_section(config_dir / "agent.yaml", "dqn_policy", PolicyNodeConfig, ignore=("agent",))
    if policy_cfg.torch_threads > 0:  # as the policy node does
        torch.set_num_threads(policy_cfg.torch_threads)
    pool = [DrivingEnv(phase=phase, config_dir=config_dir) for _ in range(envs)]
    observations = [env.reset(seed=1000 + i)[0] for i, env in enumerate(pool)]
    masks = np.stack([env.reset(seed=1000 + i)[1]["action_mask"] for i, env in enumerate(pool)]).astype(bool)
    spec = ObservationSpec(*observations[0]["frames"].shape, observations[0]["vector"].shape[0])
    agent = DQNAgent(spec, 6, load_agent_config(config_dir / "agent.yaml"), device="cpu", seed=0)
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        frames = np.stack([o["frames"] for o in observations])
        vectors = np.stack([o["vector"] for o in observations])
        actions = agent.act(frames, vectors, explore=True, action_mask=masks).actions
        for i, env in enumerate(pool):
            obs, _, terminated, truncated, _ = env.step(int(actions[i]))
            if terminated or truncated:
                obs, _ = env.reset()
            observations[i] = obs
        steps += envs
    return steps / (time.perf_counter() - start)


def window_counts(before: dict[str, int], after: dict[str, int], counter: str = "tick") -> dict[str, int]:
    """The growth of one /diagnostics counter of each simulator (its ticks, control timeouts, ...) between
    two readings. A count that went back (a restarted simulator counts from 0 again) leaves no honest
    figure for the window: ValueError."""
    growth = {name: after[name] - before.get(name, 0) for name in sorted(after)}
    went_back = [name for name, n in growth.items() if n < 0]
    if went_back:
        raise ValueError(f"the {counter} count of {', '.join(went_back)} went back during the window (restarted?)")
    return growth


def learner_rate(stats: list) -> float | None:
    """Learner updates per second between the first and the last TrainingStats of a window (None: fewer
    than two)."""
    from carla_rl.nodes.support.ros_conversions import time_seconds

    if len(stats) < 2:
        return None
    first, last = stats[0], stats[-1]
    seconds = time_seconds(last.header.stamp) - time_seconds(first.header.stamp)
    return round((last.updates - first.updates) / seconds, 1) if seconds > 0 else None


def learner_started(stats: list) -> bool:
    """Whether the policy's latest TrainingStats shows learner updates: a ``learn`` window starts only then
    (before ``learning_starts`` env steps the learner makes none)."""
    return bool(stats) and stats[-1].updates > 0


def replay_ratio(stats: list) -> float | None:
    """Env steps per learner update over a window, from its first and last TrainingStats (None: no update)."""
    if len(stats) < 2 or stats[-1].updates <= stats[0].updates:
        return None
    return round((stats[-1].env_steps - stats[0].env_steps) / (stats[-1].updates - stats[0].updates), 2)


def process_cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process (and its threads) so far, from /proc/<pid>/stat; a process
    that is gone is left out."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15 of stat)
    return out


def gpu_memory_mib(pids: list[int]) -> dict[int, int] | None:
    """GPU memory used by each of ``pids`` (MiB) as nvidia-smi reports it; None where nvidia-smi is absent."""
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                         capture_output=True, text=True, timeout=30).stdout
    used = {}
    for line in out.splitlines():
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids:
            used[int(pid)] = int(mib.strip() or 0)
    return used


def run_graph_benchmark(envs: int, seconds: float, learn: bool, phase: int, config_dir: Path,
                        composition: str = "envs", device: str = "cpu") -> dict:
    from carla_rl.graph import GraphOptions, build_graph
    from carla_rl.nodes.support.bench_graph import GraphListener
    from carla_rl.graph.supervisor import Supervisor, load_supervisor_config

    inprocess = run_inprocess(envs, seconds, phase, config_dir)
    save_dir = Path(tempfile.mkdtemp(prefix="carla_rl_bench_"))
    options = GraphOptions(num_envs=envs, phase=phase, save_dir=str(save_dir), monitor=False,
                           composition=composition, device=device)
    specs = []
    for spec in build_graph(options):
        if spec.role == "policy":
            spec = replace(spec, parameters={**spec.parameters, "start_learning": learn,
                                             "final_checkpoint_replay": False})
        specs.append(spec)
    supervisor = Supervisor(specs, config_dir, save_dir / "logs", "warn", config=load_supervisor_config(config_dir))
    listener = GraphListener(SIMULATOR_NODES, on_heartbeat=supervisor.heartbeat)
    sims = listener.simulators  # each simulator's latest /diagnostics values
    stats = listener.stats  # the policy's TrainingStats, once a second (mean envs per act, learner updates)

    def counts(key: str) -> dict[str, int]:
        return {name: int(v.get(key, 0)) for name, v in sims.items()}

    def ticks() -> dict[str, int]:
        return counts("ticks")

    def spin_for(duration: float) -> None:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            listener.spin_once(0.1)
            supervisor.poll()

    supervisor.start()
    try:
        deadline = time.monotonic() + WARMUP_TIMEOUT_S
        while not (len(sims) == envs and min(ticks().values()) >= WARMUP_TICKS):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the graph did not start ticking within {WARMUP_TIMEOUT_S:.0f} s "
                                   f"(node logs: {save_dir / 'logs'})")
            spin_for(0.2)
        waited = time.monotonic()
        if learn:
            deadline = waited + LEARNER_START_TIMEOUT_S
            while not learner_started(stats):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the learner made no update within {LEARNER_START_TIMEOUT_S:.0f} s "
                                       f"(learning_starts not reached?; node logs: {save_dir / 'logs'})")
                spin_for(0.2)
        learner_wait_s = time.monotonic() - waited
        t0, ticks0 = time.monotonic(), ticks()
        process_pids = {fqn: m.process.pid for fqn, m in supervisor.processes.items() if m.process is not None}
        cpu0 = process_cpu_seconds(process_pids)
        stats.clear()
        timeouts0, stale0 = counts("control_timeouts"), counts("stale_commands")
        spin_for(seconds)
        t1, ticks1 = time.monotonic(), ticks()
        cpu1 = process_cpu_seconds(process_pids)
        gpu_memory = gpu_memory_mib(list(process_pids.values()))
        timeouts1, stale1 = counts("control_timeouts"), counts("stale_commands")
        p50 = [float(v["latency_p50_ms"]) for v in sims.values() if "latency_p50_ms" in v]
        p99 = [float(v["latency_p99_ms"]) for v in sims.values() if "latency_p99_ms" in v]
        restarts = sum(managed.restarts for managed in supervisor.processes.values())
    finally:
        supervisor.stop()
        listener.close()
    try:
        env_steps = window_counts(ticks0, ticks1)
        # the window's (the graph's start-up, while the policy builds its agent, times out too)
        timeouts = sum(window_counts(timeouts0, timeouts1, "control_timeouts").values())
        stale = sum(window_counts(stale0, stale1, "stale_commands").values())
    except ValueError as exc:
        raise RuntimeError(f"{exc}; node logs: {save_dir / 'logs'}") from None
    steps = sum(env_steps.values())
    steps_per_s = steps / (t1 - t0)
    shutil.rmtree(save_dir, ignore_errors=True)  # checkpoints and logs of a run that measured; a failed run
                                                 # keeps them (its error names the directory)
    return {
        "envs": envs, "learn": learn, "phase": phase, "composition": composition, "seconds": round(t1 - t0, 2),
        "learner_start_wait_s": round(learner_wait_s, 1),  # learn: until the learner's first updates
        "steps_per_s": round(steps_per_s, 1),
        "inprocess_steps_per_s": round(inprocess, 1),
        "ratio_to_inprocess": round(steps_per_s / inprocess, 3) if inprocess else None,
        "p50_ms": round(float(np.median(p50)), 3) if p50 else None,
        "p99_ms": round(float(max(p99)), 3) if p99 else None,
        "control_timeouts": timeouts,  # in the window
        "control_timeouts_before_window": sum(timeouts0.values()),
        # over the window, from the policy's TrainingStats: envs per act (each message: its last 200 acts) and
        # learner updates per second (the updates counter's growth between the first and last message)
        "act_batch_mean": round(float(np.mean([m.act_batch_mean for m in stats])), 2) if stats else None,
        "learner_updates_per_s": learner_rate(stats),
        "env_steps_per_update": replay_ratio(stats),  # the replay ratio held (agent.train_frequency configured)
        # each process's CPU use over the window, in cores (1.0 = one core busy all the time)
        "cpu_cores_per_process": {name: round((cpu1[name] - cpu0[name]) / (t1 - t0), 2)
                                  for name in sorted(cpu1) if name in cpu0},
        "gpu_memory_mib": None if gpu_memory is None else {
            name: gpu_memory[pid] for name, pid in process_pids.items() if pid in gpu_memory},
        "device": device,
        "stale_commands": stale,  # in the window: commands that came after their tick had stepped (timeout) or for no tick
        "process_restarts": restarts,
        "env_steps_per_s": {k: round(n / (t1 - t0), 1) for k, n in env_steps.items()},
        **machine_description(),
    }
