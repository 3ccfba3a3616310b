"""Typed, validated configuration from ``config/*.yaml``.

Every tunable of the stack is a field of a dataclass declared with :func:`param` (default,
description, range). The YAML files use the ROS 2 parameter layout (``/**/<node>: ros__parameters:``,
which rcl applies to the node in any namespace, shared keys under ``/**:``), so the same files feed ``--params-file`` for the ROS nodes and
:func:`load_section` for the CLI, the benchmarks and the tests. Errors name the file and the key.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml


class ConfigError(ValueError):
    """A configuration file or value is invalid; the message names the file and key."""


def param(default: Any = dataclasses.MISSING, description: str = "", *, low: float | None = None,
          high: float | None = None, choices: tuple | None = None, read_only: bool = False,
          runtime: bool = False, default_factory: Any = dataclasses.MISSING) -> Any:
    """A documented config field. ``low``/``high`` are inclusive bounds checked on load.

    ``runtime``: as a ROS parameter the field may be set on the running node (``ros2 param set``),
    which validates the value and applies it; every other field is a read-only parameter, so a set
    is refused instead of silently doing nothing (nodes/ros_parameters.py). ``read_only`` is the
    default and is kept for fields that state it."""
    if runtime and read_only:
        raise ValueError("a field is either runtime or read_only")
    metadata = {"description": description, "low": low, "high": high, "choices": choices,
                "read_only": not runtime, "runtime": runtime}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _check_value(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if _is_dataclass_type(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return from_mapping(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in args:
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _check_value(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        item_tp = args[0] if args else Any
        items = [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        key_tp, val_tp = args if args else (str, Any)
        return {str(k): _check_value(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(float(value)):
            raise ConfigError(f"{where}: NaN is not allowed")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def from_mapping(cls: type, data: Mapping[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``: rejects unknown keys, wrong types and out-of-range values."""
    hints = _field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or cls.__name__}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"known keys: {', '.join(sorted(fields))}")
    kwargs = {}
    for name, value in data.items():
        key = f"{where}.{name}" if where else name
        checked = _check_value(value, hints[name], key)
        meta = fields[name].metadata
        _check_range(checked, meta, key)
        kwargs[name] = checked
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a field without default is missing
        raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(f"{where or cls.__name__}: {exc}") from None
    return obj


def _check_range(value: Any, meta: Mapping[str, Any], key: str) -> None:
    values = value if isinstance(value, (list, tuple)) else [value]
    for v in values:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            low, high = meta.get("low"), meta.get("high")
            if low is not None and v < low:
                raise ConfigError(f"{key}: {v} is below the minimum {low}")
            if high is not None and v > high:
                raise ConfigError(f"{key}: {v} is above the maximum {high}")
        choices = meta.get("choices")
        if choices is not None and v not in choices:
            raise ConfigError(f"{key}: {v!r} is not one of {', '.join(map(repr, choices))}")


def to_mapping(obj: Any) -> Any:
    """Nested plain mapping of a config dataclass (inverse of :func:`from_mapping`)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {k: to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    return obj


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'a': {'b': 1}}`` -> ``{'a.b': 1}`` (the ROS 2 parameter naming of nested YAML)."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        parts = name.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    """Parse a YAML file; syntax errors name the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of node names at the top level")
    return data


def node_parameters(path: Path, node_name: str) -> dict[str, Any]:
    """The ``ros__parameters`` of ``node_name`` in a params file, merged over the ``/**`` block."""
    data = read_yaml(path)
    merged: dict[str, Any] = {}
    for key in ("/**", node_name, f"/{node_name}", f"/**/{node_name}"):
        block = data.get(key)
        if block is None:
            continue
        if not isinstance(block, dict) or set(block) != {"ros__parameters"}:
            raise ConfigError(f"{path}: '{key}' must hold exactly one key, 'ros__parameters'")
        params = block["ros__parameters"] or {}
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: '{key}.ros__parameters' must be a mapping")
        merged = deep_merge(merged, params)
    return merged


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``, mapping by mapping (other values, lists too, replaced)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_section(path: Path, node_name: str, cls: type, overrides: Mapping[str, Any] | None = None,
                 ignore: tuple[str, ...] = ()) -> Any:
    """Load ``cls`` from the ``node_name`` block of params file ``path`` (plus dotted overrides);
    top-level keys in ``ignore`` belong to another reader (e.g. a node's own settings)."""
    params = {k: v for k, v in node_parameters(path, node_name).items() if k not in ignore}
    if overrides:
        params = deep_merge(params, unflatten(overrides))
    try:
        return from_mapping(cls, params, "")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {node_name}: {exc}") from None


# The learner's params files: ``agent.yaml`` for every device, then the preset of the device type over it
# (ROS semantics: a key of a later file wins; lists are replaced whole). The ROS graph passes the same files
# to the policy node, in this order, that :func:`carla_rl.learner.agent_config.load_device_agent_config` merges.
AGENT_PARAMS_FILE = "agent.yaml"
AGENT_DEVICE_PRESET_FILES = {"cuda": "agent_cuda.yaml"}


def device_type(device: str) -> str:
    """``cpu`` or ``cuda`` of a torch device string (``cuda:1`` -> ``cuda``); anything else is an error."""
    kind, colon, index = str(device).partition(":")
    if str(device) == "cpu" or (kind == "cuda" and (not colon or index.isdigit())):
        return kind
    raise ConfigError(f"device must be cpu or cuda[:N], got {device!r}")


def agent_params_files(device: str) -> tuple[str, ...]:
    """The learner's params files for ``device``, in overlay order (names inside the config directory)."""
    preset = AGENT_DEVICE_PRESET_FILES.get(device_type(device))
    return (AGENT_PARAMS_FILE,) + ((preset,) if preset else ())


def default_config_dir() -> Path:
    """The config directory: ``$CARLA_RL_CONFIG_DIR``, the source tree's ``config/``, or the share dir."""
    import os

    env = os.environ.get("CARLA_RL_CONFIG_DIR")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidate = parent / "config"
        if (candidate / "sim.yaml").is_file() and (parent / "src").is_dir():
            return candidate
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("carla_rl")) / "config"
    except Exception:  # noqa: BLE001 - not installed through ament
        return Path.cwd() / "config"


_deep_merge = deep_merge  # its former name (carla/carla_config.py)
