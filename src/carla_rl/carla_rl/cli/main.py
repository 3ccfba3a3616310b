"""``carla-rl``: train, evaluate, simulate, steer and benchmark the stack.

Every subcommand that runs the graph builds it from :mod:`carla_rl.graph` (the same declaration
the launch files read) and runs it under :class:`carla_rl.graph.supervisor.Supervisor`. The flags:
:mod:`carla_rl.cli.parser`.

DDS discovery (:mod:`carla_rl.graph.discovery`, flag ``--discovery``) is set once here for the CLI and
every node process it starts. Without the flag, ``ROS_DISCOVERY_SERVER`` / ``ROS_STATIC_PEERS`` from the
environment are kept; else ``ROS_AUTOMATIC_DISCOVERY_RANGE`` defaults to ``LOCALHOST`` (this host only;
docs/RELIABILITY.md), and to ``SUBNET`` for the learner and worker roles (docs/DISTRIBUTED.md).
``ROS_DOMAIN_ID`` is taken from the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from carla_rl.cli.parser import build_parser
from carla_rl.contract.config import ConfigError, default_config_dir

__all__ = ["build_parser", "limit_discovery", "main"]

DISCOVERY_RANGE_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"
DEFAULT_DISCOVERY_RANGE = "LOCALHOST"  # who can reach the graph's nodes: this host only, unless set


def limit_discovery(environ=os.environ) -> str:
    """Default ``ROS_AUTOMATIC_DISCOVERY_RANGE`` to LOCALHOST where it is unset or empty (inherited by
    the node processes); returns the range in effect."""
    if not environ.get(DISCOVERY_RANGE_ENV):
        environ[DISCOVERY_RANGE_ENV] = DEFAULT_DISCOVERY_RANGE
    return environ[DISCOVERY_RANGE_ENV]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    config_dir = Path(args.config) if args.config else default_config_dir()
    if not config_dir.is_dir():
        print(f"carla-rl: error: config directory {config_dir} does not exist", file=sys.stderr)
        return 2
    os.environ["CARLA_RL_CONFIG_DIR"] = str(config_dir.resolve())
    from carla_rl.graph import discovery

    role = "worker" if args.command == "worker" else getattr(args, "role", "all")
    try:
        discovery.apply(discovery.resolve(getattr(args, "discovery", ""), role, os.environ), os.environ)
    except ValueError as exc:
        print(f"carla-rl: error: --discovery: {exc}", file=sys.stderr)
        return 2
    limit_discovery()
    from carla_rl.contract.allocator import tune_allocator

    tune_allocator()  # as in every node process: the in-process benchmarks and training compare like with like
    try:
        from carla_rl.cli import commands

        if args.command in ("chaos", "soak"):  # the fault campaign and the soak run the graph through commands
            from carla_rl.cli import chaos

            handler = getattr(chaos, f"run_{args.command}")
        else:
            handler = getattr(commands, f"run_{args.command.replace('-', '_')}")
        return int(handler(args, config_dir) or 0)
    except ConfigError as exc:
        print(f"carla-rl: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("carla-rl: interrupted", file=sys.stderr)
        return 130
    except commands.CommandError as exc:  # type: ignore[name-defined]
        print(f"carla-rl: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
