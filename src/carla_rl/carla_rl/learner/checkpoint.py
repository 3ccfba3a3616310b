"""Checkpoints of the full learner state, written atomically and verified on load.

File layout: ``MAGIC`` (8 bytes) | payload length (8 bytes, little endian) | SHA-256 of the
payload (32 bytes) | payload (``torch.save`` of plain types and tensors). Loading checks all
three, then unpickles with ``torch.load(..., weights_only=True)`` only, so RNG states and the
config are stored as tensors / strings / numbers. Any problem raises :class:`CheckpointError`
naming it (missing, not a checkpoint, truncated, corrupted, foreign architecture).

Writes go to a temp file in the same directory: flush, fsync, ``os.replace``, fsync of the
directory; a failed save therefore leaves the previous checkpoint untouched. The optional replay
memory goes to separate chunk files in a fresh directory ``<name>.replay-<token>/`` (each chunk
verified the same way); the main file names them with their digests, and older replay
directories of the same checkpoint are removed only after the main file has been replaced.

A *policy file* (:func:`save_policy`, ``carla-rl export-policy``) is the same container holding the
online network's weights only, with the observation spec and config to rebuild it (~3 MB): what a
trained agent is shipped as. Everything that loads a checkpoint to act also loads a policy file;
resuming from one starts with its weights and a fresh optimizer, counters and replay.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from carla_rl.contract.atomic_file import atomic_write_bytes, fsync_directory
from carla_rl.contract.config import ConfigError
from carla_rl.learner.agent_config import (RETIRED_FIELDS, AgentConfig, ObservationSpec,
                                           agent_config_from_mapping, agent_config_to_mapping)
from carla_rl.learner.dqn_agent import DQNAgent
from carla_rl.learner.networks import architecture_fingerprint

MAGIC = b"CRLCKPT1"
FORMAT_VERSION = 3  # 2: action masks in the replay, flat noise buffers; 3: noise factors only
_HEADER = struct.Struct("<8sQ32s")
EMPTY_CHUNK = "empty.pt"  # the one file of a replay folder shared by its never-written chunks
REPLAY_CHUNK_SLOTS = 4096  # ring slots per replay chunk file (~29 MB at 84x84); the unit of incremental writes
POLICY_KIND = "policy"  # ``kind`` of a policy file (weights only); full checkpoints carry no ``kind``


class CheckpointError(RuntimeError):
    """A checkpoint cannot be written or read; the message names the file and the problem."""


# --------------------------------------------------------------------- files
def _encode(obj: Any) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    payload = buffer.getvalue()
    return _HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def write_file(path: str | Path, obj: Any) -> str:
    """Atomically write ``obj`` (plain types and tensors) with a verified header; returns the
    payload digest (hex)."""
    data = _encode(obj)
    atomic_write_bytes(Path(path), data)
    return data[16:48].hex()


def read_file(path: str | Path, expected_digest: str | None = None) -> Any:
    """Read and verify a file written by :func:`write_file` (``weights_only`` unpickling)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc}") from None
    if len(data) < _HEADER.size:
        raise CheckpointError(f"{path}: truncated checkpoint ({len(data)} bytes, header needs "
                              f"{_HEADER.size})")
    magic, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CheckpointError(f"{path}: not a carla_rl checkpoint (bad magic {magic!r})")
    payload = data[_HEADER.size:]
    if len(payload) < length:
        raise CheckpointError(f"{path}: truncated checkpoint ({len(payload)} of {length} "
                              f"payload bytes)")
    if len(payload) > length:
        raise CheckpointError(f"{path}: corrupted checkpoint ({len(payload) - length} bytes of "
                              f"trailing data)")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError(f"{path}: corrupted checkpoint (SHA-256 mismatch)")
    if expected_digest is not None and digest.hex() != expected_digest:
        raise CheckpointError(f"{path}: belongs to another checkpoint (digest mismatch)")
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise CheckpointError(f"{path}: unreadable checkpoint payload: {exc}") from None


# --------------------------------------------------------------------- agent state
def _rng_to_str(rng: np.random.Generator) -> str:
    return json.dumps(rng.bit_generator.state)


def _rng_from_str(rng: np.random.Generator, text: str) -> None:
    rng.bit_generator.state = json.loads(text)


def _spec_list(spec: ObservationSpec) -> list[int]:
    return [spec.frame_stack, spec.height, spec.width, spec.vector_size]


def fingerprint(agent: DQNAgent) -> str:
    return architecture_fingerprint(agent.online, agent.spec, agent.action_size)


def non_finite_tensors(state_dict: dict[str, Any]) -> list[str]:
    """Names of the floating-point tensors of ``state_dict`` holding NaN or inf."""
    return [name for name, value in state_dict.items()
            if isinstance(value, torch.Tensor) and value.is_floating_point()
            and not bool(torch.isfinite(value).all())]


def poisoned_weights(agent: DQNAgent) -> list[str]:
    """The online / target network tensors of ``agent`` that are not finite (a diverged or
    NaN-poisoned learner); such an agent is never written over good checkpoints."""
    return ([f"online.{n}" for n in non_finite_tensors(agent.online.state_dict())]
            + [f"target.{n}" for n in non_finite_tensors(agent.target.state_dict())])


def agent_state(agent: DQNAgent, include_replay: bool = False) -> dict[str, Any]:
    """Full agent state as plain types and tensors (replay arrays under ``replay``)."""
    rng: dict[str, Any] = {"torch_cpu": torch.get_rng_state(),
                           "act": _rng_to_str(agent.act_rng),
                           "replay": _rng_to_str(agent.replay.rng)}
    if agent.device.type == "cuda":
        rng["torch_cuda"] = torch.cuda.get_rng_state(agent.device)
    state = {
        "format": FORMAT_VERSION,
        "fingerprint": fingerprint(agent),
        "spec": _spec_list(agent.spec),
        "action_size": agent.action_size,
        "config": agent_config_to_mapping(agent.config),
        "online": agent.online.state_dict(),
        "target": agent.target.state_dict(),
        "optimizer": agent.algorithm.optimizer.state_dict(),
        # the fp16 GradScaler of the fast path ({} where there is none or it is off)
        "scaler": _scaler(agent).state_dict() if _scaler(agent) is not None else {},
        "counters": {"env_steps": agent.env_steps, "updates": agent.updates},
        "rng": rng,
    }
    if include_replay:
        with agent.replay_lock:
            replay = agent.replay.state_dict()
            replay["arrays"] = {k: torch.from_numpy(v.copy()) for k, v in
                                replay["arrays"].items()}
            if "tree" in replay:
                replay["tree"] = torch.from_numpy(replay["tree"].copy())
            replay["envs"] = torch.from_numpy(replay["envs"])
        state["replay"] = replay
    return state


def _scaler(agent: DQNAgent) -> torch.amp.GradScaler | None:
    """The agent's AMP GradScaler: the fast path's update has one (enabled with fp16), the
    reference update none."""
    return getattr(agent.algorithm, "scaler", None)


def _check_compatible(agent: DQNAgent, state: dict[str, Any], where: str) -> None:
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{where}: unsupported checkpoint format {state.get('format')!r} "
                              f"(this version reads format {FORMAT_VERSION}; format 2 kept "
                              "per-layer weight-noise buffers that format 3 dropped)")
    ours = fingerprint(agent)
    if state.get("fingerprint") != ours:
        raise CheckpointError(
            f"{where}: foreign architecture: checkpoint fingerprint {state.get('fingerprint')} "
            f"(observation {state.get('spec')}, {state.get('action_size')} actions) does not "
            f"match this agent's {ours} (observation {_spec_list(agent.spec)}, "
            f"{agent.action_size} actions)")


def restore_agent(agent: DQNAgent, state: dict[str, Any], where: str = "checkpoint") -> None:
    """Load ``state`` (from :func:`agent_state`) into ``agent``; checks the architecture first."""
    _check_compatible(agent, state, where)
    agent._fast = None  # a captured graph holds the old optimizer state: rebuild it lazily
    if state.get("kind") == POLICY_KIND:
        try:  # weights only: the target starts equal to them, the rest of the learner fresh
            agent.online.load_state_dict(state["online"])
            agent.target.load_state_dict(state["online"])
        except (KeyError, ValueError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{where}: inconsistent policy file: {exc}") from None
        return
    try:
        agent.online.load_state_dict(state["online"])
        agent.target.load_state_dict(state["target"])
        optimizer = agent.algorithm.optimizer
        saved = state["optimizer"]
        # Keep this run's implementation flags (a CUDA-graph run needs capturable=True, a CPU
        # run cannot use it); they decide where Adam's step counters are placed on load.
        ours = optimizer.param_groups
        saved = {**saved, "param_groups": [
            {**group, **{k: ours[i][k] for k in ("capturable", "fused", "foreach")
                         if k in ours[i]}}
            for i, group in enumerate(saved["param_groups"])]}
        optimizer.load_state_dict(saved)
        if _scaler(agent) is not None:
            _scaler(agent).load_state_dict(state["scaler"])
        if "replay" in state:
            replay = dict(state["replay"])
            replay["arrays"] = {k: v.numpy() for k, v in replay["arrays"].items()}
            if "tree" in replay:
                replay["tree"] = replay["tree"].numpy()
            replay["envs"] = replay["envs"].numpy()
            with agent.replay_lock:
                agent.replay.load_state_dict(replay)
                files = state.get("replay_files")
                agent.replay_snapshot = None if files is None else ReplaySnapshot(
                    Path(files["dir"]), int(files["chunk_slots"]), agent.replay.capacity,
                    [list(c) for c in files["chunks"]], agent.replay.change_mark())
        agent.env_steps = int(state["counters"]["env_steps"])
        agent.updates = int(state["counters"]["updates"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch_cpu"])
        if agent.device.type == "cuda" and "torch_cuda" in rng:
            torch.cuda.set_rng_state(rng["torch_cuda"], agent.device)
        _rng_from_str(agent.act_rng, rng["act"])
        _rng_from_str(agent.replay.rng, rng["replay"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"{where}: inconsistent checkpoint: {exc}") from None


# --------------------------------------------------------------------- public API
CHECKPOINT_SUFFIX = ".pt"


def confined_checkpoint_path(root: str | Path, requested: str | Path) -> Path:
    """Where a caller may have a checkpoint written: ``requested`` (relative: to ``root``) once
    ``..`` and symbolic links are resolved, if that lies strictly inside ``root`` and ends in
    ``.pt``; anything else raises :class:`CheckpointError` saying why. The result is resolved, so
    what is later created or deleted beside it (parent folders, its ``.replay-*`` folders) is inside
    ``root`` too."""
    base = Path(os.path.realpath(root))
    candidate = Path(requested)
    if not candidate.is_absolute():
        candidate = Path(root) / candidate
    resolved = Path(os.path.realpath(candidate))
    if resolved == base or not resolved.is_relative_to(base):
        raise CheckpointError(f"{requested}: refused: outside the run's save directory {base} "
                              f"(after resolving '..' and symbolic links); checkpoints are written "
                              f"only inside it")
    if resolved.suffix != CHECKPOINT_SUFFIX:
        raise CheckpointError(f"{requested}: refused: a checkpoint file name ends in "
                              f"{CHECKPOINT_SUFFIX}")
    return resolved


def _replay_dirs(path: Path) -> list[Path]:
    """The replay folders of checkpoint ``path`` (real folders beside it; never a symbolic link)."""
    return sorted(p for p in path.parent.glob(f"{path.name}.replay-*")
                  if p.is_dir() and not p.is_symlink())


@dataclass
class ReplaySnapshot:
    """The replay files of the last checkpoint an agent wrote or was restored from. The next
    checkpoint with replay writes only the ring chunks changed since (``mark``: the replay's
    :meth:`~carla_rl.learner.replay_buffer.ReplayBuffer.change_mark` then) and hard-links the
    others to these files, which are never modified after they are written."""

    directory: Path
    chunk_slots: int
    capacity: int
    chunks: list[list[str]]             # [file name, SHA-256] per ring chunk, in slot order
    mark: tuple[int, tuple[int, ...]]


@dataclass
class ReplayWrite:
    """What one checkpoint writes of the replay (for logs and benchmarks)."""

    chunks_written: int = 0
    chunks_linked: int = 0
    chunks_empty: int = 0   # never written: one shared file
    bytes_written: int = 0


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links: a full copy of the unchanged chunk
        shutil.copyfile(source, target)


def _snapshot_replay(agent: DQNAgent, chunk_slots: int):
    """Under the replay lock: the replay's metadata, its priority tree and, per ring chunk, what to
    do: ("write", copy of its arrays) if changed since the agent's :class:`ReplaySnapshot` (every
    chunk without a usable one), ("link", file, digest) of the base's file if not, ("empty",) if it
    was never written (a ring that has not gone round yet: all such chunks share one file, ``empty``:
    its "write" or "link")."""
    replay = agent.replay
    capacity = replay.capacity
    count = -(-capacity // chunk_slots)
    base = agent.replay_snapshot
    if base is not None and not (base.chunk_slots == chunk_slots and base.capacity == capacity
                                 and len(base.chunks) == count
                                 and all((base.directory / n).is_file() for n, _ in base.chunks)):
        base = None
    base_empty = next((c for c in base.chunks if c[0] == EMPTY_CHUNK), None) if base else None
    with agent.replay_lock:
        changed = replay.slots_changed_since(base.mark) if base is not None else None
        dirty = (set(range(count)) if changed is None
                 else set((changed // chunk_slots).tolist()))
        state = replay.state_dict()
        arrays = state.pop("arrays")

        def part(i: int) -> dict[str, torch.Tensor]:
            return {k: torch.from_numpy(v[i * chunk_slots:(i + 1) * chunk_slots].copy())
                    for k, v in arrays.items()}

        plan: list[tuple] = []
        empty = None
        for i in range(count):
            never = (not replay.full and i * chunk_slots >= replay.total
                     and (i + 1) * chunk_slots <= capacity)
            if never:
                if empty is None:
                    empty = ("link", *base_empty) if base_empty else ("write", part(i))
                plan.append(("empty",))
            elif i in dirty:
                plan.append(("write", part(i)))
            else:
                plan.append(("link", *base.chunks[i]))
        tree = torch.from_numpy(state.pop("tree").copy()) if "tree" in state else None
        state["envs"] = torch.from_numpy(state["envs"])
        mark = replay.change_mark()
    return state, tree, plan, empty, base, mark


def _write_replay(folder: Path, plan: list[tuple], empty: tuple | None, base: ReplaySnapshot | None,
                  report: ReplayWrite) -> list[list[str]]:
    """Carry out :func:`_snapshot_replay`'s plan in ``folder``; returns the [file, digest] entries."""
    def put(name: str, item: tuple) -> str:
        if item[0] == "write":
            digest = write_file(folder / name, item[1])
            report.chunks_written += 1
            report.bytes_written += (folder / name).stat().st_size
            return digest
        _link_or_copy(base.directory / item[1], folder / name)
        report.chunks_linked += 1
        return item[2]

    empty_digest = put(EMPTY_CHUNK, empty) if empty is not None else ""
    chunks = []
    for i, item in enumerate(plan):
        if item[0] == "empty":
            chunks.append([EMPTY_CHUNK, empty_digest])
            report.chunks_empty += 1
        else:
            name = f"chunk_{i:05d}.pt"
            chunks.append([name, put(name, item)])
    return chunks


def save_checkpoint(agent: DQNAgent, path: str | Path, include_replay: bool = False,
                    chunk_slots: int = REPLAY_CHUNK_SLOTS) -> Path:
    """Atomically write the agent's full state to ``path``; with ``include_replay`` the replay goes
    to chunk files of ``chunk_slots`` ring slots in a fresh folder ``<name>.replay-<token>/``, written
    incrementally: a chunk unchanged since the agent's last replay checkpoint (or the one it was
    restored from) is a hard link to that file, only changed chunks and the priority tree are
    written, and the never-written chunks of a ring that has not gone round share one file
    (:class:`ReplaySnapshot`; what was done: ``agent.last_replay_write``).
    An agent whose weights are not finite is refused (:func:`poisoned_weights`)."""
    path = Path(path)
    poisoned = poisoned_weights(agent)
    if poisoned:
        raise CheckpointError(f"{path}: not written: the agent's weights are not finite "
                              f"({', '.join(poisoned[:3])}{', ...' if len(poisoned) > 3 else ''})")
    state = agent_state(agent, include_replay=False)
    new_dir = None
    snapshot = None
    try:
        if include_replay:
            meta, tree, plan, empty, base, mark = _snapshot_replay(agent, chunk_slots)
            new_dir = path.parent / f"{path.name}.replay-{agent.updates}-{secrets.token_hex(4)}"
            new_dir.mkdir(parents=True)
            report = ReplayWrite()
            chunks = _write_replay(new_dir, plan, empty, base, report)
            entries = list(chunks)
            if tree is not None:
                entries.append(["tree.pt", write_file(new_dir / "tree.pt", tree)])
                report.bytes_written += (new_dir / "tree.pt").stat().st_size
            fsync_directory(new_dir)
            state["replay_manifest"] = {"dir": new_dir.name, "chunks": entries,
                                        "chunk_slots": chunk_slots, "meta": meta}
            snapshot = ReplaySnapshot(new_dir, chunk_slots, agent.replay.capacity, chunks, mark)
        write_file(path, state)
    except BaseException:
        if new_dir is not None:
            shutil.rmtree(new_dir, ignore_errors=True)
        raise
    if snapshot is not None:
        agent.replay_snapshot = snapshot
        agent.last_replay_write = report
    for old in _replay_dirs(path):  # only now is the previous replay no longer referenced
        if new_dir is None or old.name != new_dir.name:
            shutil.rmtree(old, ignore_errors=True)
    return path


def remove_checkpoint(path: str | Path) -> None:
    """Delete checkpoint ``path`` and its replay folders (files hard-linked into newer
    checkpoints' folders stay there)."""
    path = Path(path)
    path.unlink(missing_ok=True)
    for folder in _replay_dirs(path):
        shutil.rmtree(folder, ignore_errors=True)


def remove_orphan_replays(directory: str | Path) -> list[Path]:
    """Delete replay folders in ``directory`` whose checkpoint file is gone (left by a process
    killed while writing); returns them. Call only while no checkpoint is being written there."""
    removed = []
    for folder in Path(directory).glob("*.replay-*"):
        owner = folder.with_name(folder.name.rsplit(".replay-", 1)[0])
        if folder.is_dir() and not folder.is_symlink() and not owner.exists():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _manifest_entry(folder: Path, name: Any, checkpoint: Path, what: str) -> Path:
    """``folder / name`` for a name from a replay manifest: a plain name (no separator, no '..') whose
    resolved path stays inside ``folder``; anything else is refused."""
    if (not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name
            or os.sep in name):
        raise CheckpointError(f"{checkpoint}: {what} in the replay manifest is not a plain name: "
                              f"refused")
    entry = folder / name
    if not Path(os.path.realpath(entry)).is_relative_to(os.path.realpath(folder)):
        raise CheckpointError(f"{checkpoint}: {what} in the replay manifest leads outside "
                              f"{folder}: refused")
    return entry


POLICY_KEYS = ("format", "fingerprint", "spec", "action_size", "config", "online", "counters")


def _policy_of(state: dict[str, Any]) -> dict[str, Any]:
    """The policy file of a checkpoint's contents: the online weights and what rebuilds them."""
    return {**{key: state[key] for key in POLICY_KEYS}, "kind": POLICY_KIND}


def save_policy(agent: DQNAgent, path: str | Path) -> str:
    """Write ``agent``'s policy file (weights only) atomically; returns its SHA-256."""
    return write_file(path, _policy_of(agent_state(agent)))


def export_policy(checkpoint: str | Path, output: str | Path) -> dict[str, Any]:
    """Write the policy file of ``checkpoint`` (a full checkpoint or a policy file) to ``output``
    without loading its replay; returns what was written (spec, counters, size, digest)."""
    checkpoint = Path(checkpoint)
    state = read_file(checkpoint)
    if not isinstance(state, dict) or "fingerprint" not in state or "online" not in state:
        raise CheckpointError(f"{checkpoint}: not an agent checkpoint")
    if state.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{checkpoint}: unsupported checkpoint format {state.get('format')!r} "
                              f"(this version reads format {FORMAT_VERSION})")
    bad = non_finite_tensors(state["online"])
    if bad:
        raise CheckpointError(f"{checkpoint}: online weights are not finite ({', '.join(bad[:3])})")
    policy = _policy_of(state)
    digest = write_file(output, policy)
    return {"output": str(output), "bytes": Path(output).stat().st_size, "sha256": digest,
            "spec": policy["spec"], "counters": {k: int(v) for k, v in policy["counters"].items()}}


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Verified checkpoint contents; the replay (if any) re-assembled under ``replay``. A checkpoint
    whose replay folder is absent as a whole (copied to another machine without it: weights,
    optimizer, counters and the curriculum state are a few MB, the replay GBs) is read without a
    replay, the folder named under ``replay_left_behind``; a folder that is there but lacks a chunk
    or holds a corrupt one is an error."""
    path = Path(path)
    state = read_file(path)
    if not isinstance(state, dict) or "fingerprint" not in state:
        raise CheckpointError(f"{path}: not an agent checkpoint")
    manifest = state.pop("replay_manifest", None)
    if manifest is not None:
        directory = _manifest_entry(path.parent, manifest["dir"], path,
                                    f"replay folder {manifest['dir']!r}")
        if not directory.exists():  # carried without its replay: the learner goes on with an empty one
            state["replay_left_behind"] = str(directory)
            return state
        parts: dict[str, list[torch.Tensor]] = {}
        replay = dict(manifest["meta"])
        for name, digest in manifest["chunks"]:
            data = read_file(_manifest_entry(directory, name, path, f"replay chunk {name!r}"),
                             expected_digest=digest)
            if name == "tree.pt":
                replay["tree"] = data
                continue
            for key, value in data.items():
                parts.setdefault(key, []).append(value)
        replay["arrays"] = {k: torch.cat(v) for k, v in parts.items()}
        state["replay"] = replay
        state["replay_files"] = {"dir": directory, "chunk_slots": manifest["chunk_slots"],
                                 "chunks": [c for c in manifest["chunks"] if c[0] != "tree.pt"]}
    return state


def verify_checkpoint(path: str | Path) -> bool:
    """Cheap check that ``path`` can be resumed from, without loading its replay: the main file's
    header, SHA-256 and ``weights_only`` payload, an agent checkpoint with finite weights, and every
    replay file its manifest names present inside its folder (their digests are checked on load).
    Returns whether it holds a replay; raises :class:`CheckpointError` naming the problem."""
    path = Path(path)
    state = read_file(path)
    if not isinstance(state, dict) or "fingerprint" not in state or "online" not in state:
        raise CheckpointError(f"{path}: not an agent checkpoint")
    for key in ("online",) if state.get("kind") == POLICY_KIND else ("online", "target"):
        bad = non_finite_tensors(state.get(key) or {})
        if bad:
            raise CheckpointError(f"{path}: {key} weights are not finite ({', '.join(bad[:3])})")
    manifest = state.get("replay_manifest")
    if manifest is not None:
        directory = _manifest_entry(path.parent, manifest["dir"], path,
                                    f"replay folder {manifest['dir']!r}")
        for name, _ in manifest["chunks"]:
            if not _manifest_entry(directory, name, path, f"replay chunk {name!r}").is_file():
                raise CheckpointError(f"{path}: replay chunk {directory / name} is missing")
    return manifest is not None


def restore_checkpoint(agent: DQNAgent, path: str | Path) -> str:
    """Load checkpoint ``path`` into an existing agent (same architecture); returns the line for the
    caller's log: what was resumed, and what was left out (a policy file's learner state, a replay
    folder not there)."""
    state = read_checkpoint(path)
    restore_agent(agent, state, str(path))
    line = (f"resumed from {path}: {agent.updates} updates, {agent.env_steps} env steps, "
            f"replay {len(agent.replay)}")
    if state.get("kind") == POLICY_KIND:
        return line + " (a policy file: weights only, a fresh optimizer, counters and replay)"
    if "replay_left_behind" in state:
        return line + f" (its replay folder {state['replay_left_behind']} is not here: an empty replay)"
    return line


def load_checkpoint(path: str | Path, device: str = "cpu",
                    config: AgentConfig | None = None) -> DQNAgent:
    """A new agent built from the stored spec/config (or ``config``) with the stored state."""
    state = read_checkpoint(path)
    try:
        stored = agent_config_from_mapping(
            {k: v for k, v in state["config"].items() if k not in RETIRED_FIELDS},
            "checkpoint config")
    except ConfigError as exc:
        raise CheckpointError(f"{path}: invalid stored config: {exc}") from None
    agent = DQNAgent(ObservationSpec(*state["spec"]), state["action_size"],
                     config or stored, device=device)
    restore_agent(agent, state, str(path))
    return agent
