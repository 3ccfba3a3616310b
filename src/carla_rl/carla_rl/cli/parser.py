"""The command line of ``carla-rl`` (:func:`build_parser`): what :mod:`carla_rl.cli.main` parses and
:mod:`carla_rl.cli.reference` documents."""

from __future__ import annotations

import argparse

from carla_rl import __version__
from carla_rl.graph import COMPOSITIONS, REWARD_HOSTS, WORKER_COMPOSITIONS, GraphOptions
from carla_rl.graph.discovery import DEFAULT_SERVER_PORT, DISCOVERY_HELP


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse that reports a bad flag or value in one line (and exit code 2), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _phase_range(text: str) -> list[int]:
    try:
        if "-" in text:
            lo, hi = (int(v) for v in text.split("-", 1))
            phases = list(range(lo, hi + 1))
        else:
            phases = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid phase list {text!r} (use 1-10 or 1,3,5)") from None
    if not phases:
        raise argparse.ArgumentTypeError(f"empty phase list {text!r}")
    return phases


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def _add_graph_flags(p: argparse.ArgumentParser, training: bool) -> None:
    p.add_argument("--parallel-envs", type=_positive_int, default=1, metavar="N",
                   help="environments stepped in parallel, each in its namespace /env_<i> (default 1)")
    p.add_argument("--device", default="cpu",
                   help="torch device of the policy: cpu or cuda[:N] (default cpu); on CUDA the learner runs the "
                        "GPU preset config/agent_cuda.yaml over config/agent.yaml")
    p.add_argument("--simulator", choices=("embedded", "carla", "bridge"), default="embedded",
                   help="embedded simulator (default), CARLA direct client, or carla-ros-bridge adapter")
    p.add_argument("--town", default="", help="CARLA town for --simulator carla|bridge (e.g. Town03)")
    p.add_argument("--save-dir", default="runs/latest", help="checkpoints, TensorBoard logs, node logs")
    p.add_argument("--load-model-from", default="", metavar="PATH",
                   help="resume weights, optimizer, replay (if saved), phase and counters from a checkpoint")
    p.add_argument("--num-episodes", type=int, default=0, metavar="N",
                   help="stop after N training episodes (default: until the curriculum is done)")
    p.add_argument("--num-eval-episodes", type=int, default=0, metavar="N",
                   help="episodes per evaluation (default: per phase, config/curriculum.yaml)")
    p.add_argument("--phase", type=_positive_int, default=1, help="initial curriculum phase (default 1)")
    p.add_argument("--batch-size", type=int, default=0, help="learner batch size (default: config/agent.yaml)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--time-scale", type=_non_negative_float, default=0.0,
                   help="0 = as fast as possible (default); 1 = real time, for watching")
    p.add_argument("--enable-pygame-display", action="store_true",
                   help="live bird's-eye window with a HUD (phase, speed, action, reward terms)")
    p.add_argument("--save-sensor-data", action="store_true",
                   help="record each episode's sensor topics to MCAP under SAVE_DIR/recordings")
    p.add_argument("--enable-profiler", action="store_true", help="profile every node (cProfile, per-node .prof)")
    p.add_argument("--composition", choices=COMPOSITIONS, default=GraphOptions.composition,
                   help="process layout: none = a process per node; per_env = each env's simulator + "
                   "preprocessor in one component container; envs = every env's simulator + preprocessor "
                   "and the reward evaluator in one; all = those, the policy and the curriculum manager in "
                   "one; halves = two containers, each with a share of the envs and a reward evaluator for "
                   "them, the policy and the curriculum manager in the first "
                   f"(default {GraphOptions.composition})")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (log lines instead; the gym backend always prints log lines)")


def _add_host_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the learner and worker roles (graph spread over hosts)."""
    p.add_argument("--reward-on", choices=REWARD_HOSTS, default=GraphOptions.reward_on,
                   help="where the envs of worker hosts are scored: worker = a reward evaluator on each worker "
                        "host (default; only rewards and episode statistics cross the network) | learner = one "
                        "evaluator beside the policy (odometry, situation and events cross it); learner and "
                        "workers must agree")
    p.add_argument("--discovery", default="", metavar="SPEC", help=DISCOVERY_HELP)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="carla-rl",
        description="Train a driving policy with Rainbow DQN through a 10-phase curriculum, on the "
                    "embedded simulator or CARLA, as a graph of ROS 2 nodes.",
        epilog="Examples:\n  carla-rl train --parallel-envs 2\n  carla-rl set-phase 3\n"
               "  carla-rl eval --policy autopilot --phases 1-10 --episodes 20 --json\n"
               "  carla-rl bench sim --phase 10 --seconds 5 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"carla-rl {__version__}")
    parser.add_argument("--config", default="", metavar="DIR",
                        help="config directory (default: the package's config/)")
    parser.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error", "fatal"))
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineErrorParser)
    sub.required = True

    p = sub.add_parser("train", help="train on the embedded simulator (default) or CARLA")
    _add_graph_flags(p, training=True)
    p.add_argument("--backend", choices=("ros", "gym"), default="ros",
                   help="ros: the ROS 2 node graph (default); gym: the same cores in one process over a Gymnasium "
                        "vector env, no ROS (embedded simulator only; it refuses --simulator, --time-scale, "
                        "--enable-pygame-display, --save-sensor-data, --enable-profiler and --composition, which "
                        "act on the ROS graph; every other flag acts on both)")
    p.add_argument("--time-limit-s", type=_non_negative_float, default=0.0,
                   help="stop after this many seconds, with a final checkpoint (0 = until the curriculum "
                        "finishes, --num-episodes or Ctrl-C)")
    p.add_argument("--role", choices=("all", "learner"), default="all",
                   help="all = the whole graph on this host (default); learner = everything but the envs: "
                        "--parallel-envs is then the total of the envs that worker hosts run (carla-rl worker)")
    _add_host_flags(p)

    p = sub.add_parser("worker", help="a worker host: run only envs (simulator + preprocessor, and their reward "
                       "evaluator) for a learner on another host (carla-rl train --role learner)")
    p.add_argument("--worker-index", type=int, required=True, metavar="I",
                   help="this host's index, 0, 1, ...: its envs are I*N ... I*N+N-1 (ids and seeds never collide)")
    p.add_argument("--envs", type=_positive_int, default=1, metavar="N", help="envs on this host (default 1)")
    p.add_argument("--simulator", choices=("embedded", "carla", "bridge"), default="embedded",
                   help="embedded simulator (default), CARLA direct client, or carla-ros-bridge adapter")
    p.add_argument("--town", default="", help="CARLA town for --simulator carla|bridge")
    p.add_argument("--seed", type=int, default=0, help="base seed, the learner's (default 0); each env's seed "
                   "derives from it and the env's global id")
    p.add_argument("--phase", type=_positive_int, default=1,
                   help="phase until the curriculum manager's scenario arrives (default 1)")
    p.add_argument("--time-scale", type=_non_negative_float, default=0.0,
                   help="0 = as fast as possible (default); 1 = real time")
    p.add_argument("--composition", choices=WORKER_COMPOSITIONS, default=GraphOptions.composition,
                   help="process layout: none = a process per node; per_env = each env's simulator + "
                        "preprocessor in one; envs = every env's and the reward evaluator in one "
                        f"(default {GraphOptions.composition})")
    p.add_argument("--save-dir", default="runs/worker", help="node logs of this host (default runs/worker)")
    p.add_argument("--enable-profiler", action="store_true", help="profile every node (cProfile)")
    p.add_argument("--time-limit-s", type=_non_negative_float, default=0.0,
                   help="stop after this many seconds (0 = until the curriculum finishes or Ctrl-C)")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    _add_host_flags(p)

    p = sub.add_parser("discovery-server", help="run a Fast DDS Discovery Server (for --discovery server:HOST:PORT "
                       "or ROS_DISCOVERY_SERVER=HOST:PORT where multicast does not reach the other hosts)")
    p.add_argument("--listen", default="0.0.0.0", metavar="ADDRESS",
                   help="IPv4 address to listen on (default 0.0.0.0: every interface)")
    p.add_argument("--port", type=_positive_int, default=DEFAULT_SERVER_PORT,
                   help=f"UDP port (default {DEFAULT_SERVER_PORT})")

    p = sub.add_parser("chaos", help="fault campaign: train while SIGKILLing or SIGSTOPping (left stopped for the "
                       "supervisor's liveness check) a random process of the graph every --every seconds; report "
                       "faults, restarts, episodes lost, the longest env-step gap, checkpoints verified, the phase")
    _add_graph_flags(p, training=True)
    p.add_argument("--minutes", type=_non_negative_float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--every", type=_non_negative_float, default=60.0, metavar="S",
                   help="seconds between faults, the first after S (default 60)")
    p.add_argument("--baseline", action="store_true",
                   help="first a fault-free run of the same length (SAVE_DIR/baseline) to compare the phase with; "
                        "the faulted run goes to SAVE_DIR/chaos")
    p.add_argument("--recover-s", type=_non_negative_float, default=30.0, metavar="S",
                   help="no fault in the last heartbeat_timeout_s (config/graph.yaml) + S seconds, so the "
                        "recovery from every fault is seen (default 30)")
    p.add_argument("--json", action="store_true", help="the report as JSON")
    p.set_defaults(no_progress=True)

    p = sub.add_parser("soak", help="train for --minutes, sample RSS, open fds and threads of every process "
                       "(/proc) after warm-up and at the end, and checkpoint disk use vs keep_last_checkpoints")
    _add_graph_flags(p, training=True)
    p.add_argument("--minutes", type=_non_negative_float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--warmup-s", type=_non_negative_float, default=120.0, metavar="S",
                   help="first sample after S seconds: imports, allocator pools, the first replay chunks and "
                        "the first checkpoint write settle (default 120)")
    p.add_argument("--json", action="store_true", help="the report as JSON")

    p = sub.add_parser("eval", help="evaluation report per phase (policy: autopilot, random or a checkpoint)")
    p.add_argument("--policy", default="autopilot", help="autopilot | random | PATH to a checkpoint")
    p.add_argument("--phases", type=_phase_range, default=list(range(1, 11)), help="e.g. 1-10 or 1,3")
    p.add_argument("--episodes", type=_positive_int, default=20, help="episodes per phase (default 20)")
    p.add_argument("--seed", type=int, default=0, help="evaluation seed (disjoint from training seeds)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--compare", action="store_true",
                   help="also evaluate the autopilot and a random policy, for the comparison chart")
    p.add_argument("--output-dir", default="runs/eval", help="markdown table, CSV and PNG chart go here")
    p.add_argument("--json", action="store_true", help="print the per-phase results as JSON")

    p = sub.add_parser("sim", help="run the embedded simulator node alone (for rviz2 / the live view)")
    p.add_argument("--phase", type=_positive_int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-scale", type=_non_negative_float, default=1.0)
    driver = p.add_mutually_exclusive_group()
    driver.add_argument("--autopilot", action="store_true", help="drive with the scripted autopilot")
    driver.add_argument("--policy", default="", metavar="PATH",
                        help="drive with a trained policy (policy file or checkpoint, e.g. models/policy.pt): the "
                             "simulator, preprocessor, reward evaluator and the policy node acting greedily")
    p.add_argument("--device", default="cpu", help="torch device of --policy (default cpu)")
    p.add_argument("--enable-pygame-display", action="store_true")
    p.add_argument("--duration", type=_non_negative_float, default=0.0, help="seconds to run (0 = until Ctrl-C)")

    p = sub.add_parser("export-policy", help="write the weights-only policy file (~3 MB) of a checkpoint, the form a "
                       "trained agent is shipped in (eval --policy, sim --policy, train --load-model-from)")
    p.add_argument("checkpoint", help="a checkpoint, e.g. runs/latest/checkpoints/final.pt")
    p.add_argument("output", help="the policy file to write, e.g. models/policy.pt")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")

    p = sub.add_parser("set-phase", help="ask the curriculum manager to switch phase")
    p.add_argument("phase", type=int)
    p.add_argument("--timeout", type=_non_negative_float, default=10.0)

    p = sub.add_parser("status", help="print the curriculum status")
    p.add_argument("--timeout", type=_non_negative_float, default=10.0)
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("bench", help="benchmarks: sim, learner, graph, chain, hosts")
    bench = p.add_subparsers(dest="bench", metavar="WHAT", parser_class=OneLineErrorParser)
    bench.required = True
    b = bench.add_parser("sim", help="core simulator steps/s with all sensors")
    b.add_argument("--phase", type=_positive_int, default=10)
    b.add_argument("--seconds", type=_non_negative_float, default=5.0)
    b.add_argument("--json", action="store_true")
    b = bench.add_parser("learner", help="Rainbow updates/s of the device's shipped config (config/agent.yaml, on "
                         "CUDA with config/agent_cuda.yaml over it) beside the eager path; bytes per transition")
    b.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    b.add_argument("--batch-size", type=_positive_int, default=None,
                   help="default: the batch size of the device's shipped config")
    b.add_argument("--seconds", type=_non_negative_float, default=10.0)
    b.add_argument("--preset", default="", help="network preset (e.g. nature); default: config/agent.yaml")
    b.add_argument("--variants", default="",
                   help="comma-separated variants to measure (default: eager, shipped; A/B variants such as "
                        "device_eager or graph_compile_bf16_x8: see carla_rl.bench.learner)")
    b.add_argument("--profile", action="store_true", help="also list each device variant's kernels (CUDA)")
    b.add_argument("--trace-dir", default="", help="with --profile: write each variant's Chrome trace here")
    b.add_argument("--json", action="store_true")
    b = bench.add_parser("graph", help="end-to-end steps/s and latency through the ROS graph")
    b.add_argument("--envs", type=_positive_int, default=1)
    b.add_argument("--seconds", type=_non_negative_float, default=20.0)
    b.add_argument("--learn", action="store_true", help="learning on (default: learner paused)")
    b.add_argument("--composition", choices=COMPOSITIONS, default=GraphOptions.composition,
                   help="process layout of the graph (see carla-rl train; fastest measured on 2 cores: halves "
                   f"with 16-24 envs, docs/BENCHMARKS.md; default {GraphOptions.composition})")
    b.add_argument("--phase", type=_positive_int, default=2)
    b.add_argument("--device", default="cpu", help="torch device of the policy: cpu or cuda[:N] (on CUDA the "
                   "agent_cuda.yaml preset, as carla-rl train --device cuda)")
    b.add_argument("--json", action="store_true")
    b = bench.add_parser("chain", help="the machine's messaging floor: a bare three-process rclpy chain "
                         "(image + odometry -> tiny observation -> command), steps/s and latency")
    b.add_argument("--envs", type=_positive_int, default=1)
    b.add_argument("--seconds", type=_non_negative_float, default=10.0)
    b.add_argument("--json", action="store_true")

    b = bench.add_parser("hosts", help="a learner host and two worker hosts as network namespaces on this machine "
                         "(root, ip netns; multicast blocked): steps/s with one and two workers, DDS bytes per env "
                         "step between hosts, a worker's discovery time, a worker link down and back up")
    b.add_argument("--envs-per-worker", type=_positive_int, default=1)
    b.add_argument("--discovery", dest="hosts_discovery", choices=("server", "peers"), default="server",
                   help="server: a Fast DDS Discovery Server on the learner host (default); peers: static peers")
    b.add_argument("--reward-on", choices=REWARD_HOSTS, default=GraphOptions.reward_on)
    b.add_argument("--phase-s", type=_non_negative_float, default=20.0, metavar="S",
                   help="seconds of each measured stretch: one worker, two workers, after the rejoin (default 20)")
    b.add_argument("--outage-s", type=_non_negative_float, default=30.0, metavar="S",
                   help="seconds worker 0's link stays down (default 30: longer than Fast DDS's 20 s lease, so "
                        "the hosts forget each other and worker 0 must be discovered again)")
    b.add_argument("--domain-id", type=int, default=-1,
                   help="ROS_DOMAIN_ID of the hosts (default: ROS_DOMAIN_ID from the environment, else 0)")
    b.add_argument("--save-dir", default="runs/bench_hosts", help="logs of every host's processes")
    b.add_argument("--json", action="store_true")

    p = sub.add_parser("record", help="record topics to an MCAP file (ROS 2 CDR)")
    p.add_argument("output", help="output .mcap path")
    p.add_argument("--topics", nargs="+", default=[], help="topics (default: all sensor topics of /env_0)")
    p.add_argument("--duration", type=_non_negative_float, default=10.0)

    p = sub.add_parser("replay", help="republish an MCAP recording on its topics (for rviz2)")
    p.add_argument("file", help="the .mcap file")
    p.add_argument("--rate", type=_non_negative_float, default=1.0, help="playback speed (1 = recorded speed)")
    p.add_argument("--loop", action="store_true")

    p = sub.add_parser("reference", help="regenerate docs/REFERENCE.md (topics, services, messages, "
                       "parameters) from the code of this checkout")
    p.add_argument("--check", action="store_true", help="only check that docs/REFERENCE.md is up to date "
                   "(exit code 1 if not)")
    return parser
