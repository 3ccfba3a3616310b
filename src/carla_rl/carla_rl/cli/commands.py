"""Implementations of the ``carla-rl`` subcommands (argument parsing lives in cli/parser.py)."""

from __future__ import annotations

import json
import signal
import sys
import time
from argparse import Namespace
from pathlib import Path


class CommandError(RuntimeError):
    """A command failed for a reason the user can act on (printed as one line)."""


def _graph_options(args: Namespace, training: bool):
    from carla_rl.graph import GraphOptions

    options = GraphOptions(num_envs=args.parallel_envs, simulator=args.simulator, device=args.device,
                           save_dir=str(Path(args.save_dir).resolve()),
                           load_model_from=str(Path(args.load_model_from).resolve()) if args.load_model_from else "",
                           seed=args.seed, phase=args.phase, time_scale=args.time_scale, training=training,
                           batch_size=args.batch_size, num_episodes=args.num_episodes,
                           num_eval_episodes=args.num_eval_episodes, town=args.town,
                           log_level=args.log_level, save_sensor_data=args.save_sensor_data,
                           enable_profiler=args.enable_profiler, composition=args.composition,
                           role=getattr(args, "role", "all"), reward_on=getattr(args, "reward_on", "worker"),
                           discovery=getattr(args, "discovery", ""))
    try:
        options.validate()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    if args.load_model_from and not Path(args.load_model_from).exists():
        raise CommandError(f"--load-model-from {args.load_model_from}: no such file or directory")
    if args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise CommandError(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")
    return options


def catch_stop_signals() -> tuple[dict, dict]:
    """SIGINT / SIGTERM set ``stop["signal"]`` (the command's loop ends cleanly) instead of raising;
    returns (stop, previous handlers) for :func:`restore_signals`."""
    stop = {"signal": None}

    def _on_signal(signum, _frame):
        stop["signal"] = signum

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    return stop, previous


def restore_signals(previous: dict) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)


# `carla-rl train` flags the gym backend cannot honour, with the reason: refused when set to anything but
# their default (GraphOptions' defaults; the CLI's are the same). Every other flag acts on both backends.
GYM_REFUSED_FLAGS: dict[str, tuple[str, str]] = {
    "simulator": ("--simulator", "the gym backend runs the embedded simulator only"),
    "time_scale": ("--time-scale", "the gym backend steps as fast as possible only"),
    "enable_pygame_display": ("--enable-pygame-display", "the live view subscribes to the ROS graph's topics"),
    "save_sensor_data": ("--save-sensor-data", "it records the ROS graph's sensor topics"),
    "enable_profiler": ("--enable-profiler", "it profiles the ROS graph's node processes"),
    "composition": ("--composition", "it lays out the ROS graph's processes"),
    "role": ("--role", "the gym backend steps every env in its own process"),
    "reward_on": ("--reward-on", "it places the ROS graph's reward evaluators on hosts"),
    "discovery": ("--discovery", "the gym backend uses no DDS"),
}


def gym_refusal(args: Namespace) -> str | None:
    """Why ``args`` cannot run on the gym backend (one line), or None."""
    from carla_rl.graph import GraphOptions

    defaults = GraphOptions()
    for name, (flag, reason) in GYM_REFUSED_FLAGS.items():
        if getattr(args, name) != getattr(defaults, name, False):  # the display is no graph option
            return f"{flag} does not work with --backend gym: {reason} (use --backend ros)"
    return None


def run_train(args: Namespace, config_dir: Path) -> int:
    if args.town and args.simulator == "embedded":
        raise CommandError("--town needs --simulator carla or bridge (the embedded simulator has its own roads)")
    options = _graph_options(args, training=True)  # validates every flag for both backends
    if args.backend == "gym":
        refusal = gym_refusal(args)
        if refusal:
            raise CommandError(refusal)
        from carla_rl.training import vector_training
        from carla_rl.curriculum import CurriculumStateError
        from carla_rl.learner.checkpoint import CheckpointError

        try:
            summary = vector_training.train_vector(
                config_dir, options.num_envs, options.device, args.time_limit_s or float("inf"),
                Path(options.save_dir), seed=options.seed, progress=lambda line: print(line, flush=True),
                phase=options.phase, batch_size=options.batch_size, num_episodes=options.num_episodes,
                num_eval_episodes=options.num_eval_episodes, load_model_from=options.load_model_from)
        except (CheckpointError, CurriculumStateError) as exc:
            raise CommandError(str(exc)) from None
        print(json.dumps(summary.to_dict(), indent=2))
        return 0
    return run_graph(options, config_dir, progress=not args.no_progress,
                     display=args.enable_pygame_display, stop_after_s=args.time_limit_s)


def run_worker(args: Namespace, config_dir: Path) -> int:
    """``carla-rl worker``: this host's envs (and their reward evaluator) for a learner elsewhere."""
    from carla_rl.graph import GraphOptions

    if args.town and args.simulator == "embedded":
        raise CommandError("--town needs --simulator carla or bridge (the embedded simulator has its own roads)")
    options = GraphOptions(role="worker", worker_index=args.worker_index, num_envs=args.envs,
                           simulator=args.simulator, town=args.town, seed=args.seed, phase=args.phase,
                           time_scale=args.time_scale, save_dir=str(Path(args.save_dir).resolve()),
                           log_level=args.log_level, enable_profiler=args.enable_profiler,
                           composition=args.composition, reward_on=args.reward_on, discovery=args.discovery,
                           monitor=False)
    try:
        options.validate()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return run_graph(options, config_dir, progress=not args.no_progress, stop_after_s=args.time_limit_s)


def run_discovery_server(args: Namespace, config_dir: Path) -> int:
    """``carla-rl discovery-server``: Fast DDS's server binary in the foreground until Ctrl-C."""
    import os
    import subprocess

    from carla_rl.graph.discovery import server_command

    try:
        command, env = server_command(args.listen, args.port)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    print(f"carla-rl: discovery server on {args.listen}:{args.port}; clients: --discovery "
          f"server:<this host's address>:{args.port} or ROS_DISCOVERY_SERVER=<address>:{args.port}",
          file=sys.stderr)
    process = subprocess.Popen(command, env={**os.environ, **env})
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        return process.wait()


def run_graph(options, config_dir: Path, progress: bool = True, display: bool = False,
              stop_after_s: float = 0.0, observer=None) -> int:
    """Run the training graph until the curriculum finishes, N episodes, or Ctrl-C."""
    from carla_rl.graph import build_graph

    return run_specs(build_graph(options), options, config_dir, progress, display, stop_after_s, observer)


def run_specs(specs, options, config_dir: Path, progress: bool = True, display: bool = False,
              stop_after_s: float = 0.0, observer=None) -> int:
    """Run node specs under the supervisor, with the progress monitor, until a stop condition.
    ``observer`` (the fault campaign, the soak) gets ``attach(ros, supervisor)`` before the start,
    ``tick(seconds_since_start, supervisor_events)`` each loop and ``end(reason, state)`` after the stop."""
    from carla_rl.nodes.support.cli_runtime import CliRuntime
    from carla_rl.nodes.support.node_runner import PROFILE_DIR_ENV
    from carla_rl.nodes.support.progress_monitor import ProgressMonitor
    from carla_rl.graph.supervisor import NodeWarnings, Supervisor, latest_checkpoint, load_supervisor_config

    save_dir = Path(options.save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    env = dict(__import__("os").environ)
    if options.enable_profiler:
        env[PROFILE_DIR_ENV] = str(save_dir / "profiles")
    supervisor = Supervisor(specs, config_dir, save_dir / "logs", options.log_level,
                            config=load_supervisor_config(config_dir),
                            resume_checkpoint=lambda note: latest_checkpoint(save_dir, note), env=env)
    bar = _ProgressBar(options, enabled=progress)
    ros = CliRuntime()  # Ctrl-C is ours: stop cleanly
    node_warnings = NodeWarnings(supervisor.config.warning_repeat_s)

    def on_status(fqn: str, warning: bool, message: str) -> None:
        line = node_warnings.update(fqn, warning, message)
        if line:
            bar.write(line)

    monitor = ros.add(ProgressMonitor(on_heartbeat=supervisor.heartbeat, on_change=bar.update,
                                      on_status=on_status))
    display_window = None
    if display:
        from carla_rl.nodes.support.live_display import LiveDisplay

        display_window = LiveDisplay(monitor, num_envs=options.num_envs)
    stop, previous = catch_stop_signals()
    role = {"learner": ", role learner (envs on worker hosts)",
            "worker": f", role worker {options.worker_index}"}.get(options.role, "")
    print(f"carla-rl: {len(specs)} nodes in {len(supervisor.processes)} processes ({options.composition}{role}), "
          f"{options.num_envs} env(s), simulator={options.simulator}, "
          f"device={options.device}; logs in {save_dir / 'logs'}, TensorBoard: "
          f"tensorboard --logdir {save_dir / 'tensorboard'}", file=sys.stderr)
    if observer is not None:
        observer.attach(ros, supervisor)
    supervisor.start()
    started = time.monotonic()
    reason = ""
    try:
        while not reason:
            ros.spin_once(0.2)
            events = supervisor.poll()
            for event in events:
                bar.write(f"supervisor: {event}")
            if observer is not None:
                observer.tick(time.monotonic() - started, events)
            if display_window is not None:
                display_window.render()
            state = monitor.state
            if stop["signal"] is not None:
                reason = "interrupted: final checkpoint saved by the policy node"
            elif supervisor.failed:
                reason = f"failed: {supervisor.failed}"
            elif state.finished:
                reason = "curriculum finished"
            elif options.num_episodes and state.training_episodes >= options.num_episodes:
                reason = f"{state.training_episodes} training episodes done"
            elif stop_after_s and time.monotonic() - started > stop_after_s:
                reason = f"stopped after {stop_after_s:.0f} s"
    finally:
        supervisor.stop()
        bar.close()
        restore_signals(previous)
        ros.close()
        if observer is not None:
            observer.end(reason, monitor.state)
    print(f"carla-rl: {reason}; {monitor.state.training_episodes} training episodes, "
          f"phase {monitor.state.phase}; checkpoints in {save_dir / 'checkpoints'}", file=sys.stderr)
    return 1 if reason.startswith("failed") else 0


def env_steps_per_update(state) -> str:
    """The replay ratio the learner holds (env steps per gradient step over the policy's rate window;
    agent.train_frequency / gradient_steps while it keeps up), or "-" before the first update."""
    return f"{state.env_steps_per_s / state.updates_per_s:.2f}" if state.updates_per_s > 0 else "-"


class _ProgressBar:
    """tqdm bar: episodes, phase, steps/s, updates/s (plain log lines when disabled or not a TTY)."""

    def __init__(self, options, enabled: bool) -> None:
        from tqdm import tqdm

        total = options.num_episodes or None
        self.bar = tqdm(total=total, unit="ep", desc="training", dynamic_ncols=True,
                        disable=not enabled, mininterval=0.5)
        self.enabled = enabled
        self.last_logged = 0

    def update(self, state) -> None:
        done = state.training_episodes
        if self.enabled:
            self.bar.n = done
            self.bar.set_postfix_str(f"phase {state.phase} {state.phase_name} | {state.env_steps_per_s:.0f} steps/s"
                                     f" | {state.updates_per_s:.1f} upd/s ({env_steps_per_update(state)} steps/upd)"
                                     f" | last R {state.last_reward:.0f} ({state.last_reason})", refresh=False)
            self.bar.refresh()
        elif done >= self.last_logged + 10:
            self.last_logged = done
            print(f"episodes {done} phase {state.phase} steps/s {state.env_steps_per_s:.0f} updates/s "
                  f"{state.updates_per_s:.1f} env steps per update {env_steps_per_update(state)}", file=sys.stderr)

    def write(self, text: str) -> None:
        self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


def _service_call(srv_type: str, name: str, timeout: float, **fields):
    """Call an idempotent service of the running graph (re-sending while the answer is lost to the
    DDS discovery race: nodes/support/service_calls.py)."""
    from carla_rl.nodes.support.service_calls import ServiceUnavailable, call_from_outside

    try:
        return call_from_outside(srv_type, name, timeout, **fields)
    except ServiceUnavailable as exc:
        raise CommandError(str(exc)) from None


def run_set_phase(args: Namespace, config_dir: Path) -> int:
    from carla_rl.contract import topics

    response = _service_call("carla_rl_interfaces/SetPhase", topics.SET_PHASE_SERVICE, args.timeout,
                             phase=args.phase)
    print(response.message)
    return 0 if response.success else 1


def run_status(args: Namespace, config_dir: Path) -> int:
    from carla_rl.contract import topics

    status = _service_call("carla_rl_interfaces/GetStatus", topics.GET_STATUS_SERVICE, args.timeout).status
    data = {
        "phase": status.phase, "phase_name": status.phase_name, "num_phases": status.num_phases,
        "episodes_in_phase": status.episodes_in_phase, "episode_budget": status.episode_budget,
        "total_episodes": status.total_episodes, "pending_phase": status.pending_phase,
        "paused": status.paused, "evaluating": status.evaluating, "finished": status.finished,
        "history": [{"phase": e.phase, "episodes": e.episodes, "goal_rate": round(e.goal_rate, 3),
                     "collision_free_rate": round(e.collision_free_rate, 3),
                     "sidewalk_free_rate": round(e.sidewalk_free_rate, 3), "passed": e.passed}
                    for e in status.history],
    }
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(f"phase {data['phase']}/{data['num_phases']} ({data['phase_name']}): "
              f"{data['episodes_in_phase']}/{data['episode_budget']} episodes, {data['total_episodes']} total"
              f"{', paused' if data['paused'] else ''}{', evaluating' if data['evaluating'] else ''}"
              f"{', finished' if data['finished'] else ''}")
        for e in data["history"]:
            print(f"  eval phase {e['phase']}: goal {e['goal_rate']:.2f} collision-free "
                  f"{e['collision_free_rate']:.2f} sidewalk-free {e['sidewalk_free_rate']:.2f} "
                  f"{'PASS' if e['passed'] else 'fail'}")
    return 0


def run_bench(args: Namespace, config_dir: Path) -> int:
    if args.bench == "sim":
        from carla_rl.bench.sim import run_sim_benchmark

        result = run_sim_benchmark(phase=args.phase, seconds=args.seconds, config_dir=config_dir)
    elif args.bench == "learner":
        from carla_rl.bench.learner import run_learner_benchmark

        if args.trace_dir and not args.profile:
            raise CommandError("bench learner: --trace-dir needs --profile")
        if args.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise CommandError(f"--device {args.device}: torch {torch.__version__} sees no CUDA device")

        result = run_learner_benchmark(device=args.device, batch_size=args.batch_size or None,
                                       seconds=args.seconds, preset=args.preset or None, config_dir=config_dir,
                                       variants=tuple(v for v in args.variants.split(",") if v) or None,
                                       profile=args.profile, trace_dir=args.trace_dir or None)
    elif args.bench == "hosts":
        from carla_rl.bench.hosts import HostsError, run_hosts_benchmark

        try:
            result = run_hosts_benchmark(envs_per_worker=args.envs_per_worker, discovery=args.hosts_discovery,
                                         reward_on=args.reward_on, phase_s=args.phase_s,
                                         outage_s=args.outage_s,
                                         domain_id=args.domain_id, save_dir=Path(args.save_dir),
                                         config_dir=config_dir)
        except HostsError as exc:
            raise CommandError(str(exc)) from None
    elif args.bench == "chain":
        from carla_rl.bench.chain import run_chain_benchmark

        result = run_chain_benchmark(envs=args.envs, seconds=args.seconds)
    else:
        from carla_rl.bench.graph import run_graph_benchmark

        result = run_graph_benchmark(envs=args.envs, seconds=args.seconds, learn=args.learn,
                                     phase=args.phase, config_dir=config_dir, composition=args.composition,
                                     device=args.device)
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


def run_eval(args: Namespace, config_dir: Path) -> int:
    from carla_rl.training.evaluation_report import evaluate, make_driver, write_outputs

    policies = [args.policy]
    if args.compare:
        policies += [p for p in ("autopilot", "random") if p != args.policy]
    reports = []
    try:
        for policy in policies:
            driver = make_driver(policy, config_dir, args.seed, args.device)
            reports += evaluate(driver, args.phases, args.episodes, args.seed, config_dir, on_phase=_eval_line)
    except (FileNotFoundError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    outputs = write_outputs(reports, Path(args.output_dir))
    rows = [r.row() for r in reports]
    if args.json:
        print(json.dumps({"results": rows, "outputs": {k: str(v) for k, v in outputs.items()}}, indent=2))
    else:
        print(outputs["markdown"].read_text(), end="")
        print(f"written: {', '.join(str(p) for p in outputs.values())}")
    return 0


def _eval_line(report) -> None:
    """One line per evaluated phase on stderr, so a long evaluation shows where it is."""
    r = report.result
    print(f"carla-rl: {report.policy} phase {report.phase} ({report.name}): goal rate {r.goal_rate:.2f}, "
          f"collision-free {r.collision_free_rate:.2f}, {'passed' if r.passed else 'not passed'}",
          file=sys.stderr, flush=True)


def run_sim(args: Namespace, config_dir: Path) -> int:
    """The embedded simulator alone (env 0), for rviz2, the live view or recordings."""
    from carla_rl.graph import GraphOptions, build_sim_graph

    if args.policy:
        return _run_policy_sim(args, config_dir)
    options = GraphOptions(phase=args.phase, seed=args.seed, time_scale=args.time_scale, monitor=False)
    specs = build_sim_graph(options, autopilot=args.autopilot)
    return run_specs(specs, options, config_dir, display=args.enable_pygame_display,
                     stop_after_s=args.duration)


def _run_policy_sim(args: Namespace, config_dir: Path) -> int:
    """One env driven by a trained policy through the graph (evaluation mode: greedy, no learning)."""
    import tempfile

    from carla_rl.graph import GraphOptions, build_graph
    from carla_rl.learner.checkpoint import CheckpointError, verify_checkpoint

    policy = Path(args.policy)
    if not policy.is_file():
        raise CommandError(f"--policy {args.policy}: no such file")
    try:  # before the graph starts: a bad file is one line here, not a policy node's crash loop
        verify_checkpoint(policy)
    except CheckpointError as exc:
        raise CommandError(f"--policy: {exc}") from None
    save_dir = Path(tempfile.mkdtemp(prefix="carla-rl-sim-"))
    options = GraphOptions(num_envs=1, phase=args.phase, seed=args.seed, time_scale=args.time_scale,
                           device=args.device, training=False, load_model_from=str(policy.resolve()),
                           save_dir=str(save_dir), monitor=False)
    try:
        options.validate()
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return run_specs(build_graph(options), options, config_dir, display=args.enable_pygame_display,
                     stop_after_s=args.duration)


def run_export_policy(args: Namespace, config_dir: Path) -> int:
    """The weights-only policy file of a checkpoint."""
    from carla_rl.learner.checkpoint import CheckpointError, export_policy

    output = Path(args.output)
    if output.exists() and not args.force:
        raise CommandError(f"{output} exists (--force to overwrite)")
    if not Path(args.checkpoint).is_file():
        raise CommandError(f"{args.checkpoint}: no such file")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        written = export_policy(args.checkpoint, output)
    except CheckpointError as exc:
        raise CommandError(str(exc)) from None
    print(f"carla-rl: wrote {output} ({written['bytes'] / 1e6:.1f} MB, observation {written['spec']}, "
          f"{written['counters']['updates']} updates, {written['counters']['env_steps']} env steps; "
          f"sha256 {written['sha256'][:16]})")
    return 0


def run_record(args: Namespace, config_dir: Path) -> int:
    """Record topics (default: env 0's sensor topics) into one MCAP file (ROS 2 CDR) for --duration s."""
    from carla_rl.contract.config import load_section
    from carla_rl.nodes.support import mcap_io
    from carla_rl.nodes.support.cli_runtime import CliRuntime
    from carla_rl.nodes.support.mcap_io import TopicRecorderNode

    config = load_section(config_dir / "monitor.yaml", "carla_rl_record", mcap_io.RecordConfig)
    output = Path(args.output)
    if output.exists():
        raise CommandError(f"{output} exists; choose another output file")
    requested = ["/" + t.lstrip("/") for t in args.topics]
    try:
        recorder = mcap_io.McapRecorder(output, config.compression, config.chunk_size_bytes)
    except mcap_io.McapIoError as exc:
        raise CommandError(str(exc)) from None
    stop, previous = catch_stop_signals()
    ros = CliRuntime()  # our handlers stop the loop
    node = None
    try:
        node = ros.add(TopicRecorderNode(recorder, requested, config.discovery_period_s))
        print(f"carla-rl: recording {len(node.wanted)} topic(s) to {output} "
              f"{'for %g s' % args.duration if args.duration else 'until Ctrl-C'}", file=sys.stderr)
        deadline = time.monotonic() + args.duration if args.duration else float("inf")
        while stop["signal"] is None and time.monotonic() < deadline:
            ros.spin_once(min(0.1, max(0.0, deadline - time.monotonic())))
    finally:
        restore_signals(previous)
        recorder.close()
        missing = sorted(node.missing()) if node is not None else []
        ros.close()
    print(f"carla-rl: recorded {recorder.message_count} messages to {output}"
          + (f"; never seen: {', '.join(missing)}" if missing else ""), file=sys.stderr)
    return 0


def run_reference(args: Namespace, config_dir: Path) -> int:
    """Write docs/REFERENCE.md from the code, or check it (carla_rl.cli.reference)."""
    from carla_rl.cli.reference import run

    return run(check=args.check)


def run_replay(args: Namespace, config_dir: Path) -> int:
    """Republish an MCAP recording on its topics, paced by log time / --rate (0 = as fast as possible)."""
    from carla_rl.contract.config import ConfigError, node_parameters
    from carla_rl.nodes.support import mcap_io
    from carla_rl.nodes.support.cli_runtime import CliRuntime
    from carla_rl.nodes.mcap_replay_node import McapReplayNode

    try:
        player = mcap_io.McapPlayer(args.file)
        for topic in player.topics.values():
            mcap_io.message_class(topic.type_name)
    except mcap_io.McapIoError as exc:
        raise CommandError(str(exc)) from None
    if not player.topics:
        raise CommandError(f"{args.file}: no ROS 2 (cdr) channels to replay")
    params = node_parameters(config_dir / "monitor.yaml", "mcap_replay")
    params.update(file=str(Path(args.file).resolve()), rate=float(args.rate), loop=bool(args.loop),
                  exit_when_done=False)
    stop, previous = catch_stop_signals()
    ros = CliRuntime()  # our handlers stop the loop
    node = None
    try:
        try:
            node = ros.add(McapReplayNode(**params))
        except ConfigError as exc:
            raise CommandError(str(exc)) from None
        print(f"carla-rl: replaying {args.file}: {player.message_count} messages on {len(player.topics)} "
              f"topics, {player.duration_s:.1f} s at rate {args.rate:g}{' (loop)' if args.loop else ''}",
              file=sys.stderr)
        finished_at = None
        while stop["signal"] is None:
            ros.spin_once(0.05)
            if node.finished and finished_at is None:
                finished_at = time.monotonic()
            if finished_at is not None and time.monotonic() - finished_at >= node.cfg.linger_s:
                break
        published, error = node.published, node.error
    finally:
        restore_signals(previous)
        ros.close()
    if error:
        raise CommandError(error)
    print(f"carla-rl: replay {'stopped' if stop['signal'] is not None else 'finished'}: {published} messages "
          f"published", file=sys.stderr)
    return 0
