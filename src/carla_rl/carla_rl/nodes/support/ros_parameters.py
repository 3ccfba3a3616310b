"""Declare a node's ROS parameters from a config dataclass (carla_rl.contract.config.param fields).

Each leaf field becomes one parameter (nested dataclasses -> dotted names, as in the YAML), with a
ParameterDescriptor carrying the field's description, range and read-only flag, so
``ros2 param describe`` is useful. Values come from ``--params-file config/<x>.yaml``; the result is
validated with the same ``from_mapping`` the CLI uses, so both paths reject the same mistakes.

Fields declared ``param(..., runtime=True)`` may be set on the running node: one
``add_on_set_parameters_callback`` per node builds the changed config with ``from_mapping`` (same
types, ranges and ``validate()`` as at start; a refusal carries the reason) and hands it to the
``apply`` hook the node gave ``declare_config``, which swaps its config and updates what depends on
it (timer periods). Every other parameter is read-only: ``ros2 param set`` is refused, not ignored.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                 SetParametersResult)
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
                               read_only=not meta.get("runtime", False))
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


def declare_config(node: Node, cls: type, prefix: str = "", defaults: Any = None,
                   apply: Callable[[Any], None] | None = None) -> Any:
    """Declare every leaf of ``cls`` under ``prefix`` and return the validated config object.

    ``apply(new_config)`` is called after a run-time field (``param(..., runtime=True)``) was set
    and validated; it is required when ``cls`` has such fields, so none is settable without
    effect."""
    values = _declare(node, cls, prefix, defaults if defaults is not None else _default_instance(cls))
    try:
        cfg = from_mapping(cls, values, prefix.rstrip("."))
    except ConfigError as exc:
        raise ConfigError(f"node '{node.get_name()}' parameters: {exc}") from None
    names = runtime_parameters(cls, prefix)
    if names:
        if apply is None:
            raise TypeError(f"declare_config({cls.__name__}): run-time parameters "
                            f"{', '.join(names)} need an apply hook")
        _RuntimeParameters.of(node).add(_RuntimeConfig(cls, prefix, cfg, apply), names)
    return cfg


def set_timer_period(timer, period_s: float) -> None:
    """A new period for ``timer``, counted from now (a long old period does not delay the next
    call)."""
    if abs(timer.timer_period_ns - round(period_s * 1e9)) > 0:
        timer.timer_period_ns = round(period_s * 1e9)
        timer.reset()


def runtime_parameters(cls: type, prefix: str = "") -> list[str]:
    """Parameter names of the ``runtime=True`` leaves of ``cls`` (nested dataclasses: dotted)."""
    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out += runtime_parameters(tp, f"{prefix}{f.name}.")
        elif f.metadata.get("runtime"):
            out.append(f"{prefix}{f.name}")
    return out


@dataclasses.dataclass
class _RuntimeConfig:
    """A ``declare_config`` result with run-time fields: the current config and its apply hook."""

    cls: type
    prefix: str
    cfg: Any
    apply: Callable[[Any], None]

    def changed(self, params: list[Parameter]) -> Any:
        """The config with ``params`` applied, validated as at start (ConfigError says why not)."""
        data = to_mapping(self.cfg)
        for p in params:
            *path, leaf = p.name[len(self.prefix):].split(".")
            level = data
            for key in path:
                level = level[key]
            value = p.value
            if isinstance(value, (list, tuple)) or type(value).__name__ == "array":
                value = list(value)
            level[leaf] = value
        return from_mapping(self.cls, data, self.prefix.rstrip("."))


class _RuntimeParameters:
    """The node's run-time parameters and its one set-parameters callback."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.owners: dict[str, _RuntimeConfig] = {}
        node.add_on_set_parameters_callback(self.on_set)

    @classmethod
    def of(cls, node: Node) -> "_RuntimeParameters":
        registry = getattr(node, "_carla_rl_runtime_parameters", None)
        if registry is None:
            registry = cls(node)
            node._carla_rl_runtime_parameters = registry
        return registry

    def add(self, config: _RuntimeConfig, names: list[str]) -> None:
        for name in names:
            self.owners[name] = config

    def on_set(self, params: list[Parameter]) -> SetParametersResult:
        # parameters not registered here are being declared (rclpy calls this for those too); a
        # set of a read-only one is refused by rclpy before this callback runs
        by_config: dict[int, tuple[_RuntimeConfig, list[Parameter]]] = {}
        for p in params:
            owner = self.owners.get(p.name)
            if owner is not None:
                by_config.setdefault(id(owner), (owner, []))[1].append(p)
        updates = []
        for owner, changed in by_config.values():
            try:
                updates.append((owner, owner.changed(changed)))
            except ConfigError as exc:
                return SetParametersResult(successful=False, reason=str(exc))
        for owner, cfg in updates:
            try:
                owner.apply(cfg)
            except Exception as exc:  # noqa: BLE001 - the caller gets the reason; the node runs on
                return SetParametersResult(successful=False, reason=f"{type(exc).__name__}: {exc}")
            owner.cfg = cfg
            self.node.get_logger().info(
                "set " + ", ".join(f"{p.name}={p.value}" for p in by_config[id(owner)][1]))
        return SetParametersResult(successful=True)


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
