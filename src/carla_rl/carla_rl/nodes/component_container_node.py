"""component_container: several carla_rl nodes in one process, with intra-process communication.

What ``rclcpp_components``' component_container is for C++ nodes, for our Python nodes: the graph
declaration (:mod:`carla_rl.graph`, ``composition``) puts an env's simulator and preprocessor (or
every env's, plus the reward evaluator) into one container, so the lockstep chain crosses fewer
process boundaries and the big sensor messages (camera, lidar) never go through DDS between them
(:mod:`carla_rl.nodes.support.intra_process`). Each hosted node keeps its own name, namespace, parameter
files and remappings, its topics and services, exactly as when it runs alone.

Command line, one section per hosted node, then the container's own ROS arguments (log level)::

    component_container --component embedded_simulator --ros-args -r __node:=embedded_simulator \\
        -r __ns:=/env_0 --params-file sim.yaml ... -- \\
        --component sensor_preprocessor --ros-args ... -- --ros-args --log-level info

A hosted node's module (``carla_rl.nodes.<executable>_node``) names its node class ``COMPONENT``.
"""

from __future__ import annotations

import importlib
import sys

from carla_rl.graph import COMPONENT_FLAG
from carla_rl.nodes.support.intra_process import IntraProcessBus
from carla_rl.nodes.support.node_runner import run_nodes


def parse_components(argv: list[str]) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """``argv`` (without the program name) -> ([(executable, node ros args)], the container's own args)."""
    components: list[tuple[str, list[str]]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] != COMPONENT_FLAG:
            rest.append(argv[i])
            i += 1
            continue
        if i + 1 >= len(argv):
            raise ValueError(f"{COMPONENT_FLAG} needs an executable name")
        executable = argv[i + 1]
        i += 2
        node_args: list[str] = []
        if i < len(argv) and argv[i] == "--ros-args":
            end = argv.index("--", i) if "--" in argv[i:] else -1
            if end < 0:
                raise ValueError(f"{COMPONENT_FLAG} {executable}: its --ros-args section must end with '--'")
            node_args = argv[i:end]
            i = end + 1
        components.append((executable, node_args))
    if not components:
        raise ValueError(f"component_container: no {COMPONENT_FLAG} given")
    return components, rest


def component_class(executable: str):
    try:
        module = importlib.import_module(f"carla_rl.nodes.{executable}_node")
    except ModuleNotFoundError:
        raise ValueError(f"{COMPONENT_FLAG} {executable}: no such carla_rl node") from None
    cls = getattr(module, "COMPONENT", None)
    if cls is None:
        raise ValueError(f"{COMPONENT_FLAG} {executable}: this node cannot be composed (no COMPONENT)")
    return cls


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        components, own_args = parse_components(argv)
        classes = [(component_class(exe), node_args) for exe, node_args in components]
    except ValueError as exc:
        print(f"component_container: {exc}", file=sys.stderr)
        return 2
    bus = IntraProcessBus()

    def make_nodes():
        return [cls(intra_process=bus, cli_args=node_args, use_global_arguments=False)
                for cls, node_args in classes]

    return run_nodes(make_nodes, [sys.argv[0], *own_args], after_turn=bus.drain)


if __name__ == "__main__":
    raise SystemExit(main())
