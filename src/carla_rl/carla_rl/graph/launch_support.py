"""What the launch files share: launch arguments from the graph options and launch_ros Node
actions from the graph declaration (:mod:`carla_rl.graph`). Imports ``launch`` / ``launch_ros``
lazily, so the rest of the package works where they are not installed."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

from carla_rl.graph import (OPTION_FLAGS, PACKAGE, GraphOptions, NodeSpec, ProcessSpec, group_processes,
                            options_from_strings, process_arguments)

RESPAWN_DELAY_S = 2.0


def default_config_dir() -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory(PACKAGE)) / "config"


def declare_arguments(overrides: dict[str, str] | None = None) -> list:
    """One DeclareLaunchArgument per GraphOptions field (name = field, default = field default)."""
    from launch.actions import DeclareLaunchArgument

    defaults = GraphOptions()
    actions = []
    for f in dataclasses.fields(GraphOptions):
        value = (overrides or {}).get(f.name, getattr(defaults, f.name))
        if isinstance(value, bool):
            value = "true" if value else "false"
        actions.append(DeclareLaunchArgument(f.name, default_value=str(value),
                                             description=OPTION_FLAGS[f.name][1]))
    return actions


def discovery_environment(options: GraphOptions) -> dict[str, str]:
    """The DDS discovery variables of the graph's processes from the launch argument ``discovery``
    (:mod:`carla_rl.graph.discovery`, as the CLI's ``--discovery``); without it the environment is left
    as it is (ROS 2's default range is SUBNET). Variables to remove come as "" (an empty
    ROS_DISCOVERY_SERVER / ROS_STATIC_PEERS means none)."""
    from carla_rl.graph import discovery

    return discovery.parse(options.discovery).environment() if options.discovery else {}


def node_action(spec: NodeSpec, config_dir: Path, log_level: str, env: dict[str, str] | None = None):
    """The launch_ros Node for one NodeSpec: same name, namespace, parameter files, overrides, remaps."""
    from launch_ros.actions import Node

    return Node(package=PACKAGE, executable=spec.executable, name=spec.name,
                namespace=spec.namespace or "",
                parameters=[str(config_dir / f) for f in spec.params_files] + [dict(spec.parameters)],
                remappings=list(spec.remappings), respawn=spec.critical,
                respawn_delay=RESPAWN_DELAY_S if spec.critical else None,
                arguments=["--ros-args", "--log-level", log_level], output="screen",
                additional_env=dict(env or {}))


def container_action(process: ProcessSpec, config_dir: Path, log_level: str, params_dir: Path,
                     env: dict[str, str] | None = None):
    """A component container (several nodes in one process, nodes/component_container_node.py) as a
    launch_ros Node: each hosted node's parameter files, overrides (a node-keyed params file, as
    launch_ros writes for a Node's dicts) and remappings travel in its ``--component`` section."""
    from launch_ros.actions import Node

    return Node(package=PACKAGE, executable=process.executable, name=process.name,
                namespace=process.namespace or "",
                arguments=process_arguments(process, config_dir, log_level, params_dir),
                respawn=process.critical, respawn_delay=RESPAWN_DELAY_S if process.critical else None,
                output="screen", additional_env=dict(env or {}))


def process_actions(specs: list[NodeSpec], config_dir: Path, log_level: str,
                    env: dict[str, str] | None = None) -> list:
    """One launch action per process of the graph (a node alone, or its component container); ``env``:
    variables added to each process's environment (DDS discovery)."""
    import tempfile

    actions = []
    params_dir = None
    for process in group_processes(specs):
        if not process.is_container:
            actions.append(node_action(process.components[0], config_dir, log_level, env))
            continue
        params_dir = params_dir or Path(tempfile.mkdtemp(prefix="carla_rl_launch_params_"))
        actions.append(container_action(process, config_dir, log_level, params_dir, env))
    return actions


def graph_actions(build: Callable[[GraphOptions], list[NodeSpec]], fixed: dict[str, str] | None = None):
    """An OpaqueFunction that resolves the launch arguments and returns the graph's Node actions."""
    from launch.actions import OpaqueFunction

    def _resolve(context, *args, **kwargs):
        values = {f.name: context.launch_configurations[f.name] for f in dataclasses.fields(GraphOptions)
                  if f.name in context.launch_configurations}
        values.update(fixed or {})
        options = options_from_strings(values)
        config_dir = Path(options.config_dir) if options.config_dir else default_config_dir()
        return process_actions(build(options), config_dir, options.log_level, discovery_environment(options))

    return OpaqueFunction(function=_resolve)


def rviz_action(condition_argument: str = "rviz"):
    """rviz2 with config/carla_rl.rviz, started when launch argument ``rviz`` is true."""
    from launch.conditions import IfCondition
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    rviz_config = str(default_config_dir() / "carla_rl.rviz")
    return Node(package="rviz2", executable="rviz2", name="rviz2", arguments=["-d", rviz_config],
                condition=IfCondition(LaunchConfiguration(condition_argument)), output="screen")
