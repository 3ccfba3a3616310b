"""The collector: what the policy does with the ticks of its envs, for the ROS policy node and the
Gymnasium trainer alike (plain Python / numpy in and out; the node converts its messages).

Per env (a :class:`EnvSlot`) it pairs the observation (:class:`Tick`) and the outcome (:class:`Outcome`:
reward, terminated, truncated) of the same tick by step id. Unmatched ticks wait, at most
``max_pending_ticks`` per env (the oldest are dropped and counted, ``dropped_ticks``); a pair makes
older unmatched ticks of the env useless (dropped and counted too). A paired env is *ready*.
:meth:`Collector.act` takes every ready env as one batch: it stores each env's transition in the
agent's replay (the replay builds the n-step returns), ends finished episodes (a reset command,
the training episode count, the episode's return) and acts on the others with one ``agent.act``.
The caller decides when: :meth:`Collector.add_observation` / :meth:`Collector.add_outcome` say when
every present env is ready (the node's micro-batching acts then, or when its window expires; the
trainer steps its envs in lockstep).

Storing: an env's replay stream holds its current episode from its first tick; an env first seen
mid-episode (a policy restarted mid-episode, an env that was absent), an evaluation episode, or an
episode after non-finite input stores nothing until its next episode starts (counted:
``ticks_not_stored_mid_episode``). Evaluation mode (:meth:`Collector.set_evaluation_mode`, always on
for a policy that does not train) acts greedily and asks the envs for evaluation episodes at their
next reset; evaluation episodes (the tick's ``evaluation``) always act greedily and store nothing.

Non-finite input (a NaN or inf reward, or vector feature) is rejected and counted
(``non_finite_inputs``): that tick is not stored and the env stores nothing more until its next
episode starts (its pending transition loses its outcome); the env is still acted on (or reset).

Presence: an env becomes present on its first observation; one without any message for
``env_absent_after_s`` while it is not waiting for an action is marked absent (``envs_absent_events``):
its unmatched ticks are dropped (``absent_dropped_ticks``), its pending transition (an action
without outcome) is dropped (``absent_dropped_transitions``) and the micro-batching no longer
waits for it. Its next observation takes it back, storing from its next episode start. Time comes
from ``clock`` (``time.monotonic`` by default; tests pass a fake one).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Callable, ContextManager

import numpy as np

RESET_ACTION = -1  # Command.action of a reset request
SWEEPS_PER_ABSENCE_WINDOW = 4  # presence is checked this often per env_absent_after_s (while ticks arrive)
ACT_BATCH_HISTORY = 200  # act batch sizes kept for the mean batch size

# counters (shared with the node's /diagnostics)
DROPPED_TICKS = "dropped_ticks"
UNKNOWN_ENV = "unknown_env"
NOT_STORED_MID_EPISODE = "ticks_not_stored_mid_episode"
NON_FINITE_INPUTS = "non_finite_inputs"
OVERTAKEN_TICKS = "overtaken_ticks"  # a ready tick replaced by a newer one of its env before the batch
ENVS_ABSENT_EVENTS = "envs_absent_events"
ABSENT_DROPPED_TICKS = "absent_dropped_ticks"
ABSENT_DROPPED_TRANSITIONS = "absent_dropped_transitions"


@dataclass(slots=True)
class Tick:
    """The observation of one env tick."""

    env_id: int
    step_id: int
    episode_id: int
    episode_step: int               # 0: the first tick of an episode
    frames: np.ndarray              # uint8 [S, H, W], oldest first
    vector: np.ndarray              # float32 [V]
    action_mask: np.ndarray | None = None  # bool [A], the actions allowed (None: all)
    evaluation: bool = False        # a tick of an evaluation episode
    context: Any = None             # returned untouched on the tick's command (the node: the header)


@dataclass(slots=True)
class Outcome:
    """The outcome of the env's previous action, reported with the tick ``step_id`` (ignored at an
    episode's first tick)."""

    env_id: int
    step_id: int
    reward: float
    terminated: bool
    truncated: bool


@dataclass(slots=True)
class Command:
    """An action for a tick, or (``action == RESET_ACTION``) the request to start the next episode."""

    env_id: int
    step_id: int
    action: int
    q_value: float
    evaluation: bool = False        # reset: whether the next episode is an evaluation one
    context: Any = None

    @property
    def reset(self) -> bool:
        return self.action == RESET_ACTION


@dataclass(slots=True)
class EpisodeEnd:
    """A finished episode. ``steps`` / ``total_reward`` count the ticks this collector saw (the whole
    episode when ``complete``)."""

    env_id: int
    episode_id: int
    evaluation: bool
    steps: int
    total_reward: float
    terminated: bool
    truncated: bool
    complete: bool                  # seen from its first tick
    training_episodes: int          # the collector's training episode count after this one (0: evaluation)


@dataclass
class ActedBatch:
    """What one :meth:`Collector.act` did: commands to send (resets first), episodes that ended."""

    commands: list[Command]
    episode_ends: list[EpisodeEnd]
    acted: int = 0                  # envs acted on (resets not counted)


class Readiness(IntEnum):
    """What a message changed: nothing ready, some envs ready (wait for more), every present env ready."""

    WAITING = 0
    SOME_READY = 1
    ALL_READY = 2


class EnvSlot:
    """Observation and outcome of the ticks of one env until they pair up, and the env's episode."""

    __slots__ = ("observations", "outcomes", "ready", "streaming", "finished_episode", "present",
                 "last_seen", "episode_id", "episode_complete", "episode_steps", "episode_return")

    def __init__(self) -> None:
        self.observations: dict[int, Tick] = {}
        self.outcomes: dict[int, Outcome] = {}
        self.ready: tuple[Tick, Outcome] | None = None
        self.streaming = False  # the replay stream holds the current episode from its first tick
        self.finished_episode: int | None = None  # the end of an episode is announced until the reset
        self.present = False
        self.last_seen = -math.inf
        self.episode_id: int | None = None
        self.episode_complete = False
        self.episode_steps = 0
        self.episode_return = 0.0

    def drop_pending(self) -> int:
        """Forget the unmatched and the ready tick; returns how many ticks that were."""
        dropped = len(self.observations) + len(self.outcomes) + (2 if self.ready is not None else 0)
        self.observations.clear()
        self.outcomes.clear()
        self.ready = None
        return dropped


def _finite(tick: Tick, outcome: Outcome, start: bool) -> bool:
    return (start or math.isfinite(outcome.reward)) and bool(np.isfinite(tick.vector).all())


class Collector:
    """Slots of ``num_envs`` envs (ids ``0 .. num_envs - 1``) over one agent (a ``DQNAgent``: ``act``,
    ``observe``, ``record_action``, ``end_stream``, ``action_size``)."""

    def __init__(self, num_envs: int, *, training: bool = True, max_pending_ticks: int = 16,
                 env_absent_after_s: float = math.inf, clock: Callable[[], float] = time.monotonic,
                 counters: Counter | None = None, agent: Any = None,
                 agent_factory: Callable[[Tick], Any] | None = None,
                 act_context: Callable[[int], ContextManager] | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        if max_pending_ticks < 1:
            raise ValueError(f"max_pending_ticks must be at least 1, got {max_pending_ticks}")
        self.slots = [EnvSlot() for _ in range(num_envs)]
        self.training = training
        self.evaluation_mode = not training
        self.max_pending_ticks = max_pending_ticks
        self.clock = clock
        self.counters: Counter = counters if counters is not None else Counter()
        self.agent = agent
        self.agent_factory = agent_factory  # builds the agent from the first observation (its shape)
        self.act_context = act_context or (lambda batch: contextlib.nullcontext())
        self.training_episodes = 0  # training episodes finished (a restarted policy sets where it was)
        self.acted_steps = 0  # actions sent (training and evaluation)
        self.act_batches: deque[int] = deque(maxlen=ACT_BATCH_HISTORY)
        self.non_finite_rejected = 0
        self._ready_count = 0
        self.env_absent_after_s = math.inf
        self._next_sweep = math.inf
        self.set_env_absent_after(env_absent_after_s)

    # --- settings -----------------------------------------------------------------------------------------
    def set_env_absent_after(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"env_absent_after_s must be positive, got {seconds}")
        self.env_absent_after_s = seconds
        self._next_sweep = -math.inf  # check at the next message with the new window

    def set_evaluation_mode(self, on: bool) -> bool:
        """Greedy acting, nothing stored, evaluation episodes asked for at each env's next reset (a
        policy that does not train is always in evaluation mode). Returns the mode now."""
        self.evaluation_mode = bool(on) or not self.training
        return self.evaluation_mode

    # --- state --------------------------------------------------------------------------------------------
    @property
    def num_envs(self) -> int:
        return len(self.slots)

    @property
    def present_envs(self) -> int:
        return sum(s.present for s in self.slots)

    @property
    def ready_envs(self) -> int:
        return self._ready_count

    @property
    def non_finite_inputs(self) -> int:
        """Ticks rejected for non-finite input: here, and by the agent's replay (its own guard)."""
        replay = getattr(self.agent, "replay", None)
        return self.non_finite_rejected + (replay.non_finite_dropped if replay is not None else 0)

    def all_ready(self) -> bool:
        return self._ready_count > 0 and all(s.ready is not None for s in self.slots if s.present)

    # --- pairing ------------------------------------------------------------------------------------------
    def _slot(self, env_id: int) -> EnvSlot | None:
        if 0 <= env_id < len(self.slots):
            return self.slots[env_id]
        self.counters[UNKNOWN_ENV] += 1
        return None

    def add_observation(self, tick: Tick) -> Readiness:
        slot = self._slot(tick.env_id)
        if slot is None:
            return Readiness.WAITING
        if self.agent is None and self.agent_factory is not None:
            self.agent = self.agent_factory(tick)
        slot.present = True
        slot.observations[tick.step_id] = tick
        return self._try_pair(slot, tick.step_id)

    def add_outcome(self, outcome: Outcome) -> Readiness:
        slot = self._slot(outcome.env_id)
        if slot is None:
            return Readiness.WAITING
        slot.outcomes[outcome.step_id] = outcome
        return self._try_pair(slot, outcome.step_id)

    def _try_pair(self, slot: EnvSlot, step_id: int) -> Readiness:
        now = self.clock()
        slot.last_seen = now
        if now >= self._next_sweep:
            self.sweep(now)
        if step_id in slot.observations and step_id in slot.outcomes:
            if slot.ready is None:
                self._ready_count += 1
            else:  # a newer tick overtook the one waiting for the batch: the older is never acted on
                self.counters[OVERTAKEN_TICKS] += 1
            slot.ready = (slot.observations.pop(step_id), slot.outcomes.pop(step_id))
            for pending in (slot.observations, slot.outcomes):  # older unmatched ticks can never pair
                for old in [k for k in pending if k < step_id]:
                    del pending[old]
                    self.counters[DROPPED_TICKS] += 1
            return Readiness.ALL_READY if self.all_ready() else Readiness.SOME_READY
        for pending in (slot.observations, slot.outcomes):
            while len(pending) > self.max_pending_ticks:
                del pending[min(pending)]
                self.counters[DROPPED_TICKS] += 1
        return Readiness.WAITING

    # --- presence -----------------------------------------------------------------------------------------
    def sweep(self, now: float | None = None) -> list[int]:
        """Mark absent the present envs silent for longer than ``env_absent_after_s`` (an env waiting
        for its action is not: it waits on us). Returns their ids."""
        now = self.clock() if now is None else now
        self._next_sweep = now + self.env_absent_after_s / SWEEPS_PER_ABSENCE_WINDOW
        gone = [i for i, s in enumerate(self.slots)
                if s.present and s.ready is None and now - s.last_seen > self.env_absent_after_s]
        for env_id in gone:
            self._mark_absent(env_id)
        return gone

    def _mark_absent(self, env_id: int) -> None:
        slot = self.slots[env_id]
        slot.present = False
        self.counters[ENVS_ABSENT_EVENTS] += 1
        dropped = slot.drop_pending()
        if dropped:
            self.counters[ABSENT_DROPPED_TICKS] += dropped
        if slot.streaming:
            self._end_stream(env_id)
            slot.streaming = False
        slot.episode_complete = False

    def _end_stream(self, env_id: int) -> None:
        if self.agent is not None and self.agent.end_stream(env_id):
            self.counters[ABSENT_DROPPED_TRANSITIONS] += 1

    # --- acting -------------------------------------------------------------------------------------------
    def _mask(self, tick: Tick) -> np.ndarray:
        if tick.action_mask is not None and len(tick.action_mask) == self.agent.action_size:
            return np.asarray(tick.action_mask, dtype=bool)
        return np.ones(self.agent.action_size, dtype=bool)

    def act(self) -> ActedBatch:
        """Store the ready envs' transitions, end their finished episodes and act on the others as
        one batch. Nothing to do (no ready env, no agent yet): an empty batch."""
        batch = ActedBatch([], [])
        if self._ready_count == 0 or self.agent is None:
            return batch
        ready = []
        for env_id, slot in enumerate(self.slots):
            if slot.ready is not None:
                ready.append((env_id, slot, *slot.ready))
                slot.ready = None
        self._ready_count = 0
        agent = self.agent
        acting = []
        for env_id, slot, tick, outcome in ready:
            start = tick.episode_step == 0
            done = outcome.terminated or outcome.truncated
            mask = self._mask(tick)
            if start:
                slot.streaming = self.training and not tick.evaluation
                slot.episode_id, slot.episode_complete = tick.episode_id, True
                slot.episode_steps, slot.episode_return = 0, 0.0
            elif slot.episode_id != tick.episode_id:  # first seen mid-episode
                slot.episode_id, slot.episode_complete = tick.episode_id, False
                slot.episode_steps, slot.episode_return = 0, 0.0
            if not _finite(tick, outcome, start):
                self.non_finite_rejected += 1
                self.counters[NON_FINITE_INPUTS] += 1
                if slot.streaming:
                    agent.end_stream(env_id)  # the pending transition has no (finite) outcome
                    slot.streaming = False
            else:
                if not start:
                    slot.episode_steps += 1
                    slot.episode_return += float(outcome.reward)
                if slot.streaming:
                    agent.observe(env_id, tick.frames[-1], tick.vector, float(outcome.reward),
                                  bool(outcome.terminated), bool(outcome.truncated), start, action_mask=mask)
                elif self.training and not tick.evaluation:
                    self.counters[NOT_STORED_MID_EPISODE] += 1
            if done:
                slot.streaming = False
                if tick.episode_id != slot.finished_episode:
                    if not tick.evaluation:
                        self.training_episodes += 1
                    batch.episode_ends.append(EpisodeEnd(
                        env_id, tick.episode_id, tick.evaluation, slot.episode_steps, slot.episode_return,
                        bool(outcome.terminated), bool(outcome.truncated), slot.episode_complete,
                        0 if tick.evaluation else self.training_episodes))
                slot.finished_episode = tick.episode_id
                batch.commands.append(Command(env_id, tick.step_id, RESET_ACTION, math.nan,
                                              evaluation=self.evaluation_mode, context=tick.context))
            else:
                acting.append((env_id, tick, mask, slot.streaming))
        if not acting:
            return batch
        frames = np.stack([a[1].frames for a in acting])                  # [B, S, H, W]
        vectors = np.stack([a[1].vector for a in acting])                 # [B, V]
        masks = np.stack([a[2] for a in acting])                          # [B, A]
        explore = self.training and not self.evaluation_mode
        explore_rows = np.array([explore and not a[1].evaluation for a in acting])
        with self.act_context(len(acting)):
            result = agent.act(frames, vectors, explore=bool(explore_rows.any()), action_mask=masks)
            if explore_rows.any() and not explore_rows.all():  # evaluation episodes act greedily
                greedy = agent.act(frames[~explore_rows], vectors[~explore_rows], explore=False,
                                   action_mask=masks[~explore_rows])
                result.actions[~explore_rows] = greedy.actions
                result.q_values[~explore_rows] = greedy.q_values
        self.act_batches.append(len(acting))
        self.acted_steps += len(acting)
        batch.acted = len(acting)
        for row, (env_id, tick, _, store) in enumerate(acting):
            action = int(result.actions[row])
            if store:
                agent.record_action(env_id, action)
            batch.commands.append(Command(env_id, tick.step_id, action, float(result.q_values[row]),
                                          evaluation=tick.evaluation, context=tick.context))
        return batch
