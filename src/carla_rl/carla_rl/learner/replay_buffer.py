"""Replay memory that stores each frame once and rebuilds frame stacks by index.

Stream model (one call per env per tick, in tick order, envs interleaved freely)::

    observe(env, frame, vector, reward, terminated, truncated, episode_start)  # obs of tick t
    record_action(env, action)                                                 # if it continues

``reward``/``terminated``/``truncated`` are the outcome of that env's previous action (ignored
when ``episode_start``). Every observation gets one slot of a preallocated ring (SB3 style:
``pos`` + ``full``), addressed by a global sequence number ``seq`` (slot = seq % capacity). A slot
holds the newest frame [H, W] uint8, the vector [V], the action taken after it, the reward and
termination of that action, and links ``prev_seq`` / ``next_seq`` to the neighbouring
observations of the same env and episode. Frame stacks are rebuilt by following ``prev_seq``,
padding at episode start by repeating the first frame (like the preprocessor). n-step returns
follow ``next_seq``: they stop without bootstrap at a termination and bootstrap from the final
observation at a truncation (stored even though no action follows it) or from the newest
observation of a still-running episode. A slot whose stack history has been overwritten is no
longer sampled. Frame order in a stack is oldest first, newest last.

Non-finite input (a NaN or inf reward, or vector feature) is never stored: the tick is dropped and
counted (``non_finite_dropped``), the env's pending transition loses its outcome, and the env stores
nothing more until its next episode starts.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import numpy as np

from carla_rl.learner.agent_config import ObservationSpec
from carla_rl.learner.segment_tree import SumTree

NO_ACTION = -1
NO_LINK = -1
ALL_ACTIONS = -1  # action-mask bits (int32, all set) of an observation without a mask
MAX_MASKED_ACTIONS = 32
MAX_RESAMPLE_ROUNDS = 64  # rejection rounds before giving up on drawing valid transitions


def mask_to_bits(action_mask: np.ndarray) -> int:
    """bool [A] (A <= 32) -> int32 bitmask (bit a set = action a allowed)."""
    mask = np.asarray(action_mask, dtype=np.bool_).ravel()
    if mask.size > MAX_MASKED_ACTIONS or not mask.any():
        raise ValueError(f"action_mask: need 1..{MAX_MASKED_ACTIONS} actions, at least one "
                         f"allowed; got {mask.size}")
    bits = int((mask.astype(np.int64) << np.arange(mask.size, dtype=np.int64)).sum())
    return bits - (1 << 32) if bits >= 1 << 31 else bits  # as int32


def bits_to_mask(bits: np.ndarray, num_actions: int) -> np.ndarray:
    """int bitmasks [B] -> bool [B, A]."""
    return ((np.asarray(bits, dtype=np.int64)[:, None] >> np.arange(num_actions)) & 1) \
        .astype(np.bool_)


class ReplaySample(NamedTuple):
    frames: np.ndarray        # [B, S, H, W] uint8, oldest frame first
    vectors: np.ndarray       # [B, V] float32
    actions: np.ndarray       # [B] int64
    returns: np.ndarray       # [B] float32, sum_k gamma^k r_k over the n-step window
    next_frames: np.ndarray   # [B, S, H, W] uint8, observation to bootstrap from
    next_vectors: np.ndarray  # [B, V] float32
    next_masks: np.ndarray    # [B] int64 bitmask of the actions allowed at the bootstrap obs
    discounts: np.ndarray     # [B] float32, gamma^k, or 0 when the episode terminated
    indices: np.ndarray       # [B] int64 sequence numbers (for priority updates)
    weights: np.ndarray       # [B] float32 importance-sampling weights (1 when uniform)


@dataclasses.dataclass
class _EnvStream:
    last_seq: int = NO_LINK   # newest observation of the env's running episode
    acted: bool = False       # record_action was called for last_seq
    ended: bool = False       # last_seq is the final observation of its episode
    dropping: bool = False    # non-finite input seen: nothing stored until the next episode start


class ReplayBuffer:
    """Uniform replay over interleaved env streams; see the module docstring."""

    def __init__(self, capacity: int, spec: ObservationSpec, n_step: int = 1,
                 gamma: float = 0.99, rng: np.random.Generator | None = None) -> None:
        if capacity < 2:
            raise ValueError("capacity must be >= 2")
        self.capacity = capacity
        self.spec = spec
        self.n_step = n_step
        self.gamma = gamma
        self.rng = rng if rng is not None else np.random.default_rng()
        self.frames = np.zeros((capacity, spec.height, spec.width), dtype=np.uint8)
        self.vectors = np.zeros((capacity, spec.vector_size), dtype=np.float32)
        self.actions = np.full(capacity, NO_ACTION, dtype=np.int16)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.bool_)
        self.masks = np.full(capacity, ALL_ACTIONS, dtype=np.int32)  # allowed-action bits
        self.prev_seq = np.full(capacity, NO_LINK, dtype=np.int64)
        self.next_seq = np.full(capacity, NO_LINK, dtype=np.int64)
        self.dirty: list[int] | None = None  # slots touched since the last device sync
        self.total = 0            # observations ever stored = seq of the next one
        self.completed = 0        # transitions ever completed (action + outcome known)
        self.non_finite_dropped = 0  # ticks refused for a NaN / inf reward or vector feature
        self._envs: dict[int, _EnvStream] = {}

    # ----------------------------------------------------------------- ring bookkeeping
    @property
    def pos(self) -> int:
        return self.total % self.capacity

    @property
    def full(self) -> bool:
        return self.total >= self.capacity

    def __len__(self) -> int:
        return min(self.total, self.capacity)

    @property
    def oldest_seq(self) -> int:
        return max(0, self.total - self.capacity)

    def _alive(self, seq: np.ndarray | int) -> np.ndarray | bool:
        return (seq >= self.oldest_seq) & (seq < self.total) & (seq >= 0)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"frames": self.frames, "vectors": self.vectors, "actions": self.actions,
                "rewards": self.rewards, "terminated": self.terminated,
                "prev_seq": self.prev_seq, "next_seq": self.next_seq, "masks": self.masks}

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays().values())

    @property
    def bytes_per_transition(self) -> float:
        return self.nbytes / self.capacity

    # ----------------------------------------------------------------- stream API
    def observe(self, env_id: int, frame: np.ndarray, vector: np.ndarray | None, reward: float,
                terminated: bool, truncated: bool, episode_start: bool,
                action_mask: np.ndarray | None = None) -> int:
        """Store the observation of one env tick; returns its sequence number.
        ``action_mask`` bool [A] (the one given to ``act``) limits the bootstrap argmax.
        Returns NO_LINK for a tick that is not stored (non-finite input, see the module docstring)."""
        stream = self._envs.setdefault(int(env_id), _EnvStream())
        if not ((episode_start or math.isfinite(reward))
                and (vector is None or bool(np.isfinite(vector).all()))):
            self._refuse_non_finite(stream)
            return NO_LINK
        if stream.dropping:
            if not episode_start:
                return NO_LINK
            stream.dropping = False
        if not episode_start:
            if stream.last_seq == NO_LINK or stream.ended:
                raise ValueError(f"env {env_id}: observe() without episode_start, but the env "
                                 f"has no running episode")
            if not stream.acted:
                raise ValueError(f"env {env_id}: record_action() was not called after the "
                                 f"previous observation")
        elif stream.acted and self._alive(stream.last_seq):
            # The previous episode was abandoned after an action: that transition has no outcome.
            self._drop_action(stream.last_seq % self.capacity)
        seq = self.total
        slot = seq % self.capacity
        if self.full:
            self._before_overwrite(seq - self.capacity)
            if self.dirty is not None:
                self.dirty.extend(self._history_successors(seq - self.capacity))
        self.frames[slot] = frame
        self.masks[slot] = ALL_ACTIONS if action_mask is None else mask_to_bits(action_mask)
        if self.spec.vector_size:
            self.vectors[slot] = vector
        self.actions[slot] = NO_ACTION
        self.rewards[slot] = 0.0
        self.terminated[slot] = False
        self.next_seq[slot] = NO_LINK
        self.prev_seq[slot] = NO_LINK
        self.total += 1
        if not episode_start:
            last = stream.last_seq
            if self._alive(last):
                last_slot = last % self.capacity
                self.rewards[last_slot] = reward
                self.terminated[last_slot] = bool(terminated)
                self.next_seq[last_slot] = seq
                self.prev_seq[slot] = last
                self.completed += 1
                self._on_transition_complete(last)
                if self.dirty is not None:
                    self.dirty.append(last_slot)
        if self.dirty is not None:
            self.dirty.append(slot)
        stream.last_seq = seq
        stream.acted = False
        stream.ended = bool(terminated or truncated) and not episode_start
        return seq

    def record_action(self, env_id: int, action: int) -> None:
        """The action chosen for the env's newest observation."""
        stream = self._envs.get(int(env_id))
        if stream is not None and stream.dropping:
            return
        if stream is None or stream.last_seq == NO_LINK:
            raise ValueError(f"env {env_id}: record_action() before any observation")
        if stream.ended:
            raise ValueError(f"env {env_id}: the episode ended; reset instead of acting")
        if stream.acted:
            raise ValueError(f"env {env_id}: record_action() called twice for one observation")
        if self._alive(stream.last_seq):
            self.actions[stream.last_seq % self.capacity] = int(action)
            if self.dirty is not None:
                self.dirty.append(stream.last_seq % self.capacity)
        stream.acted = True

    def observe_many(self, env_ids, frames, vectors, rewards, terminated, truncated,
                     episode_start, action_masks=None) -> np.ndarray:
        """``observe`` for E envs of one tick: arrays [E], frames [E, H, W], vectors [E, V]."""
        return np.array([
            self.observe(int(e), frames[i], None if vectors is None else vectors[i],
                         float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                         bool(episode_start[i]),
                         None if action_masks is None else action_masks[i])
            for i, e in enumerate(env_ids)], dtype=np.int64)

    def record_actions(self, env_ids, actions) -> None:
        for e, a in zip(env_ids, actions):
            self.record_action(int(e), int(a))

    def end_stream(self, env_id: int) -> bool:
        """The env's running episode ends here, without a final outcome (the env left, or its input
        was rejected upstream): its pending transition (an action without outcome) is dropped, and the
        env stores again from its next episode start. Returns whether a transition was dropped."""
        stream = self._envs.get(int(env_id))
        if stream is None:
            return False
        dropped = stream.acted and not stream.dropping and bool(self._alive(stream.last_seq))
        if dropped:
            self._drop_action(stream.last_seq % self.capacity)
        stream.last_seq, stream.acted, stream.ended, stream.dropping = NO_LINK, False, False, False
        return dropped

    def _refuse_non_finite(self, stream: _EnvStream) -> None:
        """Drop a tick with non-finite input: the pending transition gets no outcome and the env
        stores nothing until its next episode start."""
        self.non_finite_dropped += 1
        if not stream.dropping and stream.acted and self._alive(stream.last_seq):
            self._drop_action(stream.last_seq % self.capacity)
        stream.last_seq, stream.acted, stream.ended, stream.dropping = NO_LINK, False, False, True

    # hooks for the prioritized subclass
    def _before_overwrite(self, dying_seq: int) -> None:
        pass

    def _on_transition_complete(self, seq: int) -> None:
        pass

    def _drop_action(self, slot: int) -> None:
        self.actions[slot] = NO_ACTION
        if self.dirty is not None:
            self.dirty.append(slot)

    def _history_successors(self, dying_seq: int) -> list[int]:
        """Slots of ``dying_seq`` and of the S-1 observations whose stack history holds it."""
        slots = [dying_seq % self.capacity]
        seq = dying_seq
        for _ in range(self.spec.frame_stack - 1):
            seq = int(self.next_seq[seq % self.capacity])
            if seq == NO_LINK or not self._alive(seq):
                break
            slots.append(seq % self.capacity)
        return slots

    def take_dirty(self) -> np.ndarray:
        """Slots touched since the last call (starts tracking on the first call)."""
        slots = np.unique(np.array(self.dirty or [], dtype=np.int64))
        self.dirty = []
        return slots

    # ----------------------------------------------------------------- reconstruction
    def stack_seqs(self, seqs: np.ndarray) -> np.ndarray:
        """Sequence numbers [B, S] of the frame stacks ending at ``seqs`` [B] (oldest first)."""
        seqs = np.asarray(seqs, dtype=np.int64)
        out = np.empty(seqs.shape + (self.spec.frame_stack,), dtype=np.int64)
        cur = seqs
        out[..., -1] = cur
        for k in range(self.spec.frame_stack - 2, -1, -1):
            # A dead (overwritten) slot holds another observation's link: stay on it, so the
            # stack's oldest seq is dead and the transition is rejected by is_valid.
            prev = np.where(self._alive(cur), self.prev_seq[cur % self.capacity], cur)
            cur = np.where(prev >= 0, prev, cur)  # pad by repeating the episode's first frame
            out[..., k] = cur
        return out

    def frame_stack(self, seqs: np.ndarray) -> np.ndarray:
        """Frame stacks [B, S, H, W] uint8 ending at ``seqs`` [B]."""
        return self.frames[self.stack_seqs(seqs) % self.capacity]

    def is_valid(self, seqs: np.ndarray) -> np.ndarray:
        """[B] bool: the transition at ``seqs`` can be sampled (action, outcome, history)."""
        seqs = np.asarray(seqs, dtype=np.int64)
        slots = seqs % self.capacity
        ok = self._alive(seqs) & (self.actions[slots] != NO_ACTION) \
            & (self.next_seq[slots] != NO_LINK)
        oldest = self.stack_seqs(seqs)[:, 0]
        return ok & self._alive(oldest)

    def is_valid_one(self, seq: int) -> bool:
        """Scalar :meth:`is_valid` for the per-observation hooks (plain Python, fast)."""
        oldest = self.oldest_seq
        if not oldest <= seq < self.total:
            return False
        slot = seq % self.capacity
        if self.actions[slot] == NO_ACTION or self.next_seq[slot] == NO_LINK:
            return False
        cur = seq
        for _ in range(self.spec.frame_stack - 1):
            if cur < oldest:
                return False
            prev = int(self.prev_seq[cur % self.capacity])
            if prev == NO_LINK:
                return True
            cur = prev
        return cur >= oldest

    def n_step_targets(self, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(returns [B], discounts [B], bootstrap seqs [B]) of valid transitions ``seqs``."""
        seqs = np.asarray(seqs, dtype=np.int64)
        returns = np.zeros(seqs.shape, dtype=np.float64)
        discount = np.ones(seqs.shape, dtype=np.float64)  # gamma^k after k steps
        ended = np.zeros(seqs.shape, dtype=np.bool_)       # terminated inside the window
        boot = seqs.copy()
        cur = seqs.copy()
        active = np.ones(seqs.shape, dtype=np.bool_)
        for k in range(self.n_step):
            slots = cur % self.capacity
            returns += np.where(active, discount * self.rewards[slots], 0.0)
            nxt = self.next_seq[slots]
            boot = np.where(active, nxt, boot)
            term = active & self.terminated[slots]
            ended |= term
            discount = np.where(active, discount * self.gamma, discount)
            nslots = np.where(nxt >= 0, nxt, 0) % self.capacity
            cont = active & ~term & (self.actions[nslots] != NO_ACTION) \
                & (self.next_seq[nslots] != NO_LINK)
            cur = np.where(cont, nxt, cur)
            active = cont
        discount = np.where(ended, 0.0, discount)
        return returns.astype(np.float32), discount.astype(np.float32), boot

    # ----------------------------------------------------------------- sampling
    def can_sample(self, batch_size: int) -> bool:
        return min(self.completed, self.capacity) >= max(batch_size, 1)

    def _draw(self, count: int) -> np.ndarray:
        lo = self.oldest_seq
        return lo + self.rng.integers(0, self.total - lo, size=count)

    def _draw_valid(self, batch_size: int) -> np.ndarray:
        seqs = self._draw(batch_size)
        for _ in range(MAX_RESAMPLE_ROUNDS):
            bad = ~self.is_valid(seqs)
            if not bad.any():
                return seqs
            seqs[bad] = self._draw(int(bad.sum()))
        raise RuntimeError("replay: could not draw valid transitions (too few stored?)")

    def _weights(self, seqs: np.ndarray, beta: float) -> np.ndarray:
        return np.ones(seqs.shape, dtype=np.float32)

    def sample(self, batch_size: int, beta: float = 0.0) -> ReplaySample:
        if not self.can_sample(batch_size):
            raise RuntimeError(f"replay: {self.completed} transitions, need {batch_size}")
        seqs = self._draw_valid(batch_size)
        return self._gather(seqs, self._weights(seqs, beta))

    def _gather(self, seqs: np.ndarray, weights: np.ndarray) -> ReplaySample:
        slots = seqs % self.capacity
        returns, discounts, boot = self.n_step_targets(seqs)
        bslots = boot % self.capacity
        return ReplaySample(
            frames=self.frame_stack(seqs), vectors=self.vectors[slots],
            actions=self.actions[slots].astype(np.int64), returns=returns,
            next_frames=self.frame_stack(boot), next_vectors=self.vectors[bslots],
            next_masks=self.masks[bslots].astype(np.int64),
            discounts=discounts, indices=seqs, weights=weights.astype(np.float32))

    def update_priorities(self, seqs: np.ndarray, priorities: np.ndarray) -> None:
        """No-op for uniform replay (kept so the agent need not branch)."""

    # ----------------------------------------------------------------- persistence
    def change_mark(self) -> tuple[int, tuple[int, ...]]:
        """Where the ring stands now, for :meth:`slots_changed_since`: the next sequence number and
        each env's newest observation (the only older slots a later call writes: its outcome, its
        action, or a dropped action)."""
        return self.total, tuple(s.last_seq for s in self._envs.values() if s.last_seq != NO_LINK)

    def slots_changed_since(self, mark: tuple[int, tuple[int, ...]]) -> np.ndarray | None:
        """Sorted slots whose arrays may differ from when ``mark`` (:meth:`change_mark`) was taken;
        None when every slot may (the ring went round, or the mark is from another state)."""
        total, open_seqs = mark
        if total > self.total or self.total - total >= self.capacity:
            return None
        seqs = np.concatenate([np.arange(total, self.total, dtype=np.int64),
                               np.asarray(open_seqs, dtype=np.int64)])
        return np.unique(seqs % self.capacity)

    def state_dict(self) -> dict[str, Any]:
        """Plain state (numpy arrays + ints) for checkpoints."""
        envs = np.array([[e, s.last_seq, s.acted, s.ended] for e, s in self._envs.items()],
                        dtype=np.int64).reshape(-1, 4)
        return {"arrays": self._arrays(), "total": self.total, "completed": self.completed,
                "envs": envs, "capacity": self.capacity}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["capacity"]) != self.capacity:
            raise ValueError(f"replay capacity {state['capacity']} != {self.capacity}")
        for name, array in self._arrays().items():
            src = np.asarray(state["arrays"][name])
            if src.shape != array.shape:
                raise ValueError(f"replay array {name}: shape {src.shape} != {array.shape}")
            array[...] = src
        self.total = int(state["total"])
        self.completed = int(state["completed"])
        self._envs = {int(e): _EnvStream(int(last), bool(acted), bool(ended))
                      for e, last, acted, ended in np.asarray(state["envs"]).reshape(-1, 4)}


class PrioritizedReplayBuffer(ReplayBuffer):
    """Proportional prioritized replay (Schaul et al. 2016) over a :class:`SumTree`.

    New transitions get the largest priority seen so far. Transitions that can no longer be
    sampled (overwritten, or whose stack history was overwritten) have priority 0.
    """

    def __init__(self, capacity: int, spec: ObservationSpec, n_step: int = 1,
                 gamma: float = 0.99, alpha: float = 0.6, eps: float = 1e-6,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__(capacity, spec, n_step, gamma, rng)
        self.alpha = alpha
        self.eps = eps
        self.max_priority = 1.0
        self.tree = SumTree(capacity)

    @property
    def nbytes(self) -> int:
        return super().nbytes + self.tree.nbytes

    def _before_overwrite(self, dying_seq: int) -> None:
        # The dying observation leaves the stack history of its next S-1 successors.
        slots = self._history_successors(dying_seq)
        self.tree.update(np.array(slots), np.zeros(len(slots)))

    def _on_transition_complete(self, seq: int) -> None:
        if self.is_valid_one(seq):
            self.tree.update(np.array([seq % self.capacity]),
                             np.array([self.max_priority ** self.alpha]))

    def _drop_action(self, slot: int) -> None:
        super()._drop_action(slot)
        self.tree.update(np.array([slot]), np.zeros(1))

    def _draw_valid(self, batch_size: int) -> np.ndarray:
        lo = self.oldest_seq
        slots = self.tree.sample(batch_size, self.rng)
        for _ in range(MAX_RESAMPLE_ROUNDS):
            seqs = lo + (slots - lo) % self.capacity  # slot -> its live sequence number
            bad = ~self.is_valid(seqs)
            if not bad.any():
                return seqs
            self.tree.update(slots[bad], np.zeros(int(bad.sum())))  # defensive: never again
            slots[bad] = self.tree.sample(int(bad.sum()), self.rng)
        raise RuntimeError("replay: could not draw valid prioritized transitions")

    def _weights(self, seqs: np.ndarray, beta: float) -> np.ndarray:
        probs = self.tree[seqs % self.capacity] / self.tree.total()  # [B]
        weights = (len(self) * probs) ** (-beta)
        return (weights / weights.max()).astype(np.float32)

    def update_priorities(self, seqs: np.ndarray, priorities: np.ndarray) -> None:
        """Set priorities (|TD| or loss, before ``alpha``) of sampled transitions ``seqs``."""
        seqs = np.asarray(seqs, dtype=np.int64)
        priorities = np.asarray(priorities, dtype=np.float64) + self.eps
        keep = self.is_valid(seqs)  # skip transitions overwritten since they were sampled
        if not keep.any():
            return
        self.max_priority = max(self.max_priority, float(priorities[keep].max()))
        self.tree.update(seqs[keep] % self.capacity, priorities[keep] ** self.alpha)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["tree"] = self.tree.tree
        state["max_priority"] = self.max_priority
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.tree.tree[...] = np.asarray(state["tree"])
        self.max_priority = float(state["max_priority"])
