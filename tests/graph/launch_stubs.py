"""Recording stand-ins for the parts of `launch` / `launch_ros` our launch files use (neither can be
installed from PyPI). They record constructor arguments so a test can run the real launch files'
generate_launch_description() and resolve its OpaqueFunction like `ros2 launch` would."""

from __future__ import annotations

import sys
import types
from contextlib import contextmanager


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription(Recorded):
    @property
    def entities(self):
        return self.args[0]


class DeclareLaunchArgument(Recorded):
    @property
    def name(self):
        return self.args[0]

    @property
    def default_value(self):
        return self.kwargs.get("default_value")


class OpaqueFunction(Recorded):
    def run(self, launch_configurations: dict[str, str]):
        context = types.SimpleNamespace(launch_configurations=launch_configurations)
        return self.kwargs["function"](context)


class Node(Recorded):
    pass


MODULES = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {"DeclareLaunchArgument": DeclareLaunchArgument, "OpaqueFunction": OpaqueFunction,
                       "IncludeLaunchDescription": type("IncludeLaunchDescription", (Recorded,), {})},
    "launch.conditions": {"IfCondition": type("IfCondition", (Recorded,), {})},
    "launch.substitutions": {"LaunchConfiguration": type("LaunchConfiguration", (Recorded,), {}),
                             "PathJoinSubstitution": type("PathJoinSubstitution", (Recorded,), {})},
    "launch.launch_description_sources": {
        "PythonLaunchDescriptionSource": type("PythonLaunchDescriptionSource", (Recorded,), {})},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node},
    "launch_ros.substitutions": {"FindPackageShare": type("FindPackageShare", (Recorded,), {})},
}


@contextmanager
def installed():
    saved = {name: sys.modules.get(name) for name in MODULES}
    for name, attrs in MODULES.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        sys.modules[name] = module
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module
