"""Batching across a process boundary: the core of the ``batch_link`` node (no ROS import).

Composition ``halves`` runs the envs of its second container apart from the policy. Sent env by env,
every tick of such an env would cross DDS three times (observation, reward, command), and on small
machines one DDS sample between processes costs about 0.45 ms of CPU whatever its size
(2-core dev machine, 2026-11-26, commit 6273e09). A pair of links turns that into two samples per tick and group of
envs (:func:`split_groups`): the envs' link gathers the observations and rewards of a group into one
``EnvStepBatch``; the policy's link hands them out on the usual per-env topics and gathers the policy's
answers into one ``VehicleCommandBatch``, which the envs' link hands out again.

:class:`TickGatherer` decides when a batch is complete. It is told which envs a batch waits for
(those that were sent a command, or every env at the start), collects items per env in arrival order,
and is complete once each awaited env has delivered every kind of item. Items of an env that is not
awaited are kept too and go out with the next batch: nothing is dropped for arriving early or late.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SIDES = ("envs", "policy")


class TickGatherer:
    """Items (observations, rewards, commands) of a fixed set of envs, batched per tick.

    ``kinds``: the item kinds every awaited env delivers per tick (``("observation", "reward")`` on the
    envs' side, ``("command",)`` on the policy's side)."""

    def __init__(self, env_ids: Iterable[int], kinds: tuple[str, ...]) -> None:
        self.env_ids = tuple(sorted(checked_env_ids(env_ids)))
        if not kinds:
            raise ValueError("a batch link needs at least one item kind")
        self.kinds = tuple(kinds)
        self.items: dict[str, list[tuple[int, Any]]] = {kind: [] for kind in self.kinds}
        self.awaited: set[int] = set()
        self.delivered: dict[str, set[int]] = {kind: set() for kind in self.kinds}
        self.missing = 0  # (awaited env, kind) pairs not delivered yet: complete() without a set scan per item

    def serves(self, env_id: int) -> bool:
        return env_id in self.env_ids

    def await_envs(self, env_ids: Iterable[int]) -> None:
        """The next batch waits for these envs (each must be one of ``env_ids``)."""
        env_ids = [int(e) for e in env_ids]
        for env_id in env_ids:  # all checked before any is awaited
            if not self.serves(env_id):
                raise ValueError(f"env {env_id} is not served by this link (env_ids {list(self.env_ids)})")
        for env_id in env_ids:
            if env_id not in self.awaited:
                self.awaited.add(env_id)
                self.missing += sum(env_id not in self.delivered[kind] for kind in self.kinds)

    def add(self, kind: str, env_id: int, item: Any) -> bool:
        """Keep ``item`` for the next batch; returns whether the batch is now complete."""
        if kind not in self.items:
            raise ValueError(f"unknown item kind {kind!r}; expected one of {', '.join(self.kinds)}")
        if not self.serves(env_id):
            raise ValueError(f"env {env_id} is not served by this link (env_ids {list(self.env_ids)})")
        env_id = int(env_id)
        self.items[kind].append((env_id, item))
        if env_id not in self.delivered[kind]:
            self.delivered[kind].add(env_id)
            self.missing -= env_id in self.awaited
        return self.complete()

    @property
    def pending(self) -> int:
        return sum(len(v) for v in self.items.values())

    def complete(self) -> bool:
        """Every awaited env delivered every kind (False while nothing is awaited)."""
        return bool(self.awaited) and self.missing == 0

    def take(self) -> dict[str, list[Any]]:
        """The batch: per kind, the items in env order (an env's items in arrival order); then empty,
        awaiting nothing."""
        batch = {kind: [item for _, item in sorted(items, key=lambda pair: pair[0])]
                 for kind, items in self.items.items()}
        self.items = {kind: [] for kind in self.kinds}
        self.delivered = {kind: set() for kind in self.kinds}
        self.awaited = set()
        self.missing = 0
        return batch


def checked_env_ids(env_ids: Iterable[int]) -> list[int]:
    """The env ids of a link, refused when there are none or one repeats."""
    ids = [int(e) for e in env_ids]
    if not ids:
        raise ValueError("a batch link needs at least one env id")
    if len(set(ids)) != len(ids):
        raise ValueError(f"env ids {ids} repeat an env")
    return ids


def split_by_env(items: Iterable[Any], env_ids: Iterable[int]) -> tuple[list[Any], list[Any]]:
    """(items whose ``env_id`` is one of ``env_ids``, the others): a received batch, checked."""
    served = set(env_ids)
    kept: list[Any] = []
    foreign: list[Any] = []
    for item in items:
        (kept if int(item.env_id) in served else foreign).append(item)
    return kept, foreign


def split_groups(env_ids: list[int], groups: int) -> list[list[int]]:
    """``env_ids`` (sorted) in ``groups`` runs of consecutive ids, as even as can be; fewer groups when
    there are fewer envs."""
    if groups < 1:
        raise ValueError(f"groups must be at least 1, got {groups}")
    ids = sorted(env_ids)
    groups = min(groups, len(ids))
    bounds = [round(i * len(ids) / groups) for i in range(groups + 1)]
    return [ids[bounds[i]:bounds[i + 1]] for i in range(groups)]
