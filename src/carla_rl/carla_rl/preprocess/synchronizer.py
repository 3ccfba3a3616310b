"""Per-tick message synchronisation by step id (used by sensor_preprocessor and reward_evaluator).

Every tick the simulator publishes one message of each *required* kind (camera, lidar, odometry,
situation, ...) and zero or more *event* messages (collision, lane_invasion). The *announcer*
(EgoSituation, published last) says how many events of each kind belong to the tick, so a step
is complete when every required kind is present and every announced event has arrived.

Pure Python: messages are opaque objects; only the announcer's count fields are read (``getattr``),
so ROS messages and the dataclasses of ``sensor_frame`` both work.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Iterable, Mapping


class DropReason(StrEnum):
    """Why messages or steps were discarded (keys of :attr:`StepSynchronizer.dropped`)."""

    INCOMPLETE = "incomplete"          # a newer step completed first
    OVERFLOW = "overflow"              # more than max_pending_steps steps were open
    LATE = "late"                      # message for a step that already completed or was dropped
    DUPLICATE = "duplicate"            # second message of a required kind for one step
    UNEXPECTED_EVENT = "unexpected_event"  # more events than announced
    UNKNOWN_KIND = "unknown_kind"


@dataclass
class StepBundle:
    """The complete set of one step: one message per required kind, a list per event kind."""

    step_id: int
    messages: dict[str, Any]
    events: dict[str, list[Any]]


@dataclass
class _PendingStep:
    messages: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Any]] = field(default_factory=dict)


class StepSynchronizer:
    """Collects messages by ``step_id`` and emits each step once it is complete.

    ``required_kinds``: one message each per step (must include ``announcer`` if one is given).
    ``event_count_fields``: event kind -> name of the announcer field with that kind's count.
    Completing step t drops every open step older than t (counted as ``incomplete``); at most
    ``max_pending_steps`` steps are open at once (the oldest is dropped as ``overflow``).
    """

    def __init__(self, required_kinds: Iterable[str], *,
                 event_count_fields: Mapping[str, str] | None = None,
                 announcer: str | None = None, max_pending_steps: int = 8,
                 on_complete: Callable[[StepBundle], None] | None = None) -> None:
        self.required_kinds = tuple(required_kinds)
        self.event_count_fields = dict(event_count_fields or {})
        self.announcer = announcer
        if self.event_count_fields and announcer is None:
            raise ValueError("event kinds need an announcer kind that carries their counts")
        if announcer is not None and announcer not in self.required_kinds:
            raise ValueError(f"announcer {announcer!r} must be one of the required kinds")
        overlap = set(self.required_kinds) & set(self.event_count_fields)
        if overlap:
            raise ValueError(f"kinds {sorted(overlap)} are both required and event kinds")
        if max_pending_steps < 1:
            raise ValueError("max_pending_steps must be at least 1")
        self.max_pending_steps = max_pending_steps
        self.on_complete = on_complete
        self._pending: dict[int, _PendingStep] = {}
        self._last_closed_step: int | None = None
        self.completed = 0
        self.dropped: Counter[str] = Counter()        # DropReason -> messages or steps dropped

    @property
    def pending_steps(self) -> tuple[int, ...]:
        return tuple(sorted(self._pending))

    @property
    def last_closed_step(self) -> int | None:
        """Newest step that completed or was dropped; older messages are late."""
        return self._last_closed_step

    def reset(self) -> None:
        """Forget open steps and the step-id watermark (e.g. the simulator restarted)."""
        self._pending.clear()
        self._last_closed_step = None

    def add(self, kind: str, step_id: int, message: Any) -> StepBundle | None:
        """Add one message; returns (and passes to ``on_complete``) the step it completed."""
        if kind not in self.required_kinds and kind not in self.event_count_fields:
            self.dropped[DropReason.UNKNOWN_KIND] += 1
            return None
        if self._last_closed_step is not None and step_id <= self._last_closed_step:
            self.dropped[DropReason.LATE] += 1
            return None
        step = self._pending.get(step_id)
        if step is None:
            if len(self._pending) >= self.max_pending_steps and step_id < min(self._pending):
                self.dropped[DropReason.OVERFLOW] += 1     # older than every open step
                return None
            step = self._open(step_id)
        if kind in self.event_count_fields:
            step.events.setdefault(kind, []).append(message)
        else:
            if kind in step.messages:
                self.dropped[DropReason.DUPLICATE] += 1
            step.messages[kind] = message
        return self._complete_if_ready(step_id, step)

    def _open(self, step_id: int) -> _PendingStep:
        while len(self._pending) >= self.max_pending_steps:
            oldest = min(self._pending)
            del self._pending[oldest]
            self.dropped[DropReason.OVERFLOW] += 1
            self._close(oldest)
        step = _PendingStep()
        self._pending[step_id] = step
        return step

    def _close(self, step_id: int) -> None:
        if self._last_closed_step is None or step_id > self._last_closed_step:
            self._last_closed_step = step_id

    def _announced_counts(self, step: _PendingStep) -> dict[str, int] | None:
        if self.announcer is None:
            return {}
        announcement = step.messages.get(self.announcer)
        if announcement is None:
            return None
        return {kind: int(getattr(announcement, name))
                for kind, name in self.event_count_fields.items()}

    def _complete_if_ready(self, step_id: int, step: _PendingStep) -> StepBundle | None:
        if any(kind not in step.messages for kind in self.required_kinds):
            return None
        counts = self._announced_counts(step)
        if counts is None:
            return None
        if any(len(step.events.get(kind, ())) < count for kind, count in counts.items()):
            return None
        events = {}
        for kind, count in counts.items():
            received = step.events.get(kind, [])
            if len(received) > count:
                self.dropped[DropReason.UNEXPECTED_EVENT] += len(received) - count
            events[kind] = received[:count]
        del self._pending[step_id]
        for older in [s for s in self._pending if s < step_id]:
            del self._pending[older]
            self.dropped[DropReason.INCOMPLETE] += 1
        self._close(step_id)
        self.completed += 1
        bundle = StepBundle(step_id=step_id, messages=dict(step.messages), events=events)
        if self.on_complete is not None:
            self.on_complete(bundle)
        return bundle
