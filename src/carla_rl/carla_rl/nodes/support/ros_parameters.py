"""Declare a node's ROS parameters from a config dataclass (carla_rl.contract.config.param fields).

Each leaf field becomes one parameter (nested dataclasses -> dotted names, as in the YAML), with a
ParameterDescriptor carrying the field's description, range and read-only flag, so
``ros2 param describe`` is useful. Values come from ``--params-file config/<x>.yaml``; the result is
validated with the same ``from_mapping`` the CLI uses, so both paths reject the same mistakes.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter

from carla_rl.contract.config import ConfigError, from_mapping, to_mapping

_SCALAR_TYPES = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER,
                 float: Parameter.Type.DOUBLE, str: Parameter.Type.STRING}
_ARRAY_TYPES = {bool: Parameter.Type.BOOL_ARRAY, int: Parameter.Type.INTEGER_ARRAY,
                float: Parameter.Type.DOUBLE_ARRAY, str: Parameter.Type.STRING_ARRAY}


def _parameter_type(tp: Any) -> Parameter.Type | None:
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return _ARRAY_TYPES.get(args[0] if args else float)
    return _SCALAR_TYPES.get(tp)


def _descriptor(name: str, f: dataclasses.Field, ptype: Parameter.Type) -> ParameterDescriptor:
    meta = f.metadata
    desc = ParameterDescriptor(name=name, type=ptype.value, description=meta.get("description", ""),
                               read_only=bool(meta.get("read_only", False)))
    low, high = meta.get("low"), meta.get("high")
    if low is not None and high is not None:
        if ptype == Parameter.Type.INTEGER:
            desc.integer_range = [IntegerRange(from_value=int(low), to_value=int(high), step=0)]
        elif ptype == Parameter.Type.DOUBLE:
            desc.floating_point_range = [FloatingPointRange(from_value=float(low), to_value=float(high),
                                                            step=0.0)]
    if meta.get("choices"):
        desc.additional_constraints = "one of: " + ", ".join(map(str, meta["choices"]))
    return desc


def declare_config(node: Node, cls: type, prefix: str = "", defaults: Any = None) -> Any:
    """Declare every leaf of ``cls`` under ``prefix`` and return the validated config object."""
    values = _declare(node, cls, prefix, defaults if defaults is not None else _default_instance(cls))
    try:
        return from_mapping(cls, values, prefix.rstrip("."))
    except ConfigError as exc:
        raise ConfigError(f"node '{node.get_name()}' parameters: {exc}") from None


def _default_instance(cls: type) -> Any:
    try:
        return cls()
    except TypeError:
        return None


def _declare(node: Node, cls: type, prefix: str, defaults: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        default = getattr(defaults, f.name) if defaults is not None else None
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out[f.name] = _declare(node, tp, name + ".", default)
            continue
        ptype = _parameter_type(tp)
        if ptype is None:  # e.g. dict fields: declared by the node itself
            continue
        descriptor = _descriptor(name, f, ptype)
        default_value = to_mapping(default)
        if isinstance(default_value, tuple):
            default_value = list(default_value)
        if ptype == Parameter.Type.DOUBLE and isinstance(default_value, int):
            default_value = float(default_value)
        try:
            if default_value is None or default_value == []:
                node.declare_parameter(name, ptype, descriptor)
            else:
                node.declare_parameter(name, default_value, descriptor)
        except Exception as exc:  # noqa: BLE001 - rclpy raises several types for bad overrides
            raise ConfigError(f"node '{node.get_name()}': parameter {name}: {exc}") from None
        try:
            value = node.get_parameter(name).value
        except ParameterUninitializedException:
            value = [] if ptype in _ARRAY_TYPES.values() else None
        if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
            value = list(value)
        out[f.name] = value
    return out



def declare_phases(node: Node, tolerant: bool = False) -> list:
    """Declare ``num_phases`` and ``phases.phase_<i>.*`` (config/curriculum.yaml, ``/**`` block).

    ``tolerant``: a broken phase becomes its ConfigError in the list instead of failing the node
    (the curriculum manager refuses to enter it and says why)."""
    from carla_rl.contract.scenario import PhaseConfig

    num = node.declare_parameter(
        "num_phases", 0, ParameterDescriptor(description="Number of curriculum phases (from "
                                             "config/curriculum.yaml)", read_only=True,
                                             integer_range=[IntegerRange(from_value=0, to_value=100,
                                                                         step=0)])).value
    if num == 0:  # no phase table given: defaults would silently drop every phase's settings
        raise ConfigError(f"node '{node.get_name()}' needs the phase table: pass --params-file "
                          f"config/curriculum.yaml (num_phases and phases.phase_<i>)")
    phases: list = []
    for i in range(1, num + 1):
        try:
            phases.append(declare_config(node, PhaseConfig, f"phases.phase_{i}."))
        except ConfigError as exc:
            if not tolerant:
                raise
            phases.append(exc)
    return phases
