"""The fast update path: replay mirrored on the device and the whole update step in one graph.

:class:`DeviceReplay` mirrors the ring of a :class:`ReplayBuffer` on the device, with the
frame-stack slots and n-step targets of every slot precomputed on the host at sync time, so
that sampling, gathering, importance weights and priority updates are a few kernels with
static shapes and no host synchronisation. :class:`FastUpdater` then captures
sample -> loss -> backward -> clip -> Adam -> priority update -> (soft) target update in a
single CUDA graph and replays it per update. The host ring stays the source of truth; touched
slots are copied over (``sync``) before each update.

Priorities live in a two-level blocked sum structure (leaves [n_blocks, K] + block sums
[n_blocks]) instead of a binary tree: a draw is a cumsum + searchsorted over the block sums and
a cumsum + searchsorted inside one block, a handful of kernels instead of two per tree level.
Without prioritized replay the leaves are 1 for sampleable transitions and 0 otherwise, so the
same sampler draws uniformly. Invalid draws (possible only through float rounding) get weight 0
and keep priority 0.

It drives :class:`carla_rl.learner.fast_algorithm.FastDQNAlgorithm`, the fast path's update;
the reference update (``DQNAgent.update`` over :class:`carla_rl.learner.algorithm.DQNAlgorithm`)
samples on the host instead. On CPU the same code runs eagerly (this is how it is tested);
graphs are CUDA only.
"""

from __future__ import annotations

import contextlib
import math
import threading
from typing import Callable, Protocol

import numpy as np
import torch

from carla_rl.learner.agent_config import AgentConfig
from carla_rl.learner.algorithm import Batch, UpdateStats
from carla_rl.learner.fast_algorithm import FastDQNAlgorithm, autocast_dtype
from carla_rl.learner.networks import first_conv_input
from carla_rl.learner.replay_buffer import ReplayBuffer


class UpdaterOwner(Protocol):
    """What :class:`FastUpdater` reads and advances of the agent that owns it (``DQNAgent``): the
    updater steps the agent's algorithm over the agent's replay and counts its updates."""

    config: AgentConfig
    device: torch.device
    algorithm: FastDQNAlgorithm
    replay: ReplayBuffer
    replay_lock: threading.Lock
    capture_lock: threading.Lock
    updates: int

    @property
    def beta(self) -> float: ...

    @property
    def lr(self) -> float: ...


GRAPH_WARMUP_STEPS = 3  # eager calls on a side stream before capture (allocate optimizer state, compile)


class DeviceReplay:
    """Device mirror of a :class:`ReplayBuffer` with on-device sampling (see module doc).

    Per slot the device holds what a sample needs, precomputed on the host at sync time: the
    newest frame, vector and action, the slots of its frame stack [S], and its n-step return,
    discount and bootstrap slot. A slot's stack never changes once written; its n-step target
    changes only when one of the next ``n_step`` outcomes arrives, so a sync refreshes the
    touched slots and their ``n_step - 1`` predecessors. A leaf priority > 0 marks a sampleable
    transition.
    """

    def __init__(self, buffer: ReplayBuffer, device: torch.device, prioritized: bool,
                 alpha: float, priority_eps: float,
                 frame_transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.buffer = buffer
        # applied to the gathered frame stacks of every sample (e.g. networks.first_conv_input)
        self.frame_transform = frame_transform
        self.device = device
        self.capacity = n = buffer.capacity
        self.prioritized = prioritized
        self.alpha = alpha
        self.priority_eps = priority_eps
        spec = buffer.spec
        self.frames = torch.zeros((n, spec.height, spec.width), dtype=torch.uint8, device=device)
        self.vectors = torch.zeros((n, spec.vector_size), dtype=torch.float32, device=device)
        self.actions = torch.zeros(n, dtype=torch.int64, device=device)
        self.stack_slots = torch.zeros((n, spec.frame_stack), dtype=torch.int64, device=device)
        self.returns = torch.zeros(n, dtype=torch.float32, device=device)
        self.discounts = torch.zeros(n, dtype=torch.float32, device=device)
        self.boot_slots = torch.zeros(n, dtype=torch.int64, device=device)
        self.masks = torch.full((n,), -1, dtype=torch.int64, device=device)  # allowed bits
        self.size = torch.zeros((), dtype=torch.int64, device=device)  # len(buffer)
        self._size_host = 0  # the value in self.size
        self.block = 1 << max(0, math.ceil(math.log2(math.sqrt(n))))  # K ~ sqrt(capacity)
        self.n_blocks = -(-n // self.block)
        self.leaves = torch.zeros((self.n_blocks, self.block), dtype=torch.float32,
                                  device=device)
        self.block_sums = torch.zeros(self.n_blocks, dtype=torch.float64, device=device)
        self.max_priority = torch.ones((), dtype=torch.float32, device=device)
        self._synced_total = 0  # host total at the last sync: newer slots are fresh

    @property
    def nbytes(self) -> int:
        tensors = [self.frames, self.vectors, self.actions, self.stack_slots, self.returns,
                   self.discounts, self.boot_slots, self.masks, self.leaves, self.block_sums]
        return sum(t.numel() * t.element_size() for t in tensors)

    # ----------------------------------------------------------------- host -> device
    def _with_predecessors(self, seqs: np.ndarray) -> np.ndarray:
        """``seqs`` plus up to n_step - 1 predecessors each (their n-step targets may change)."""
        b = self.buffer
        out = [seqs]
        cur = seqs
        for _ in range(b.n_step - 1):
            prev = b.prev_seq[cur % b.capacity]  # cur is alive, so its link is its own
            cur = prev[prev >= 0]
            cur = cur[b._alive(cur)]
            out.append(cur)
        return np.unique(np.concatenate(out))

    @torch.no_grad()
    def sync(self, slots: np.ndarray | None = None) -> None:
        """Refresh ``slots`` (all when None) and the slots whose n-step targets depend on them.
        Newly completed transitions get the maximum priority, invalid ones 0."""
        b = self.buffer
        lo, total = b.oldest_seq, b.total
        if len(b) != self._size_host:  # a kernel launch per update otherwise
            self.size.fill_(len(b))
            self._size_host = len(b)
        if slots is None:
            seqs = np.arange(lo, total, dtype=np.int64)
        else:
            slots = np.asarray(slots, dtype=np.int64)
            seqs = lo + (slots - lo) % b.capacity
            seqs = self._with_predecessors(seqs[b._alive(seqs)])
        if seqs.size == 0:
            self._synced_total = total
            return
        slots = seqs % b.capacity
        valid = b.is_valid(seqs)
        returns, discounts, boot = b.n_step_targets(np.where(valid, seqs, lo))
        dev = self.device

        def put(target: torch.Tensor, values: np.ndarray) -> None:
            target[index] = torch.from_numpy(np.ascontiguousarray(values)).to(dev, target.dtype)

        index = torch.from_numpy(slots).to(dev)
        put(self.frames, b.frames[slots])
        put(self.vectors, b.vectors[slots])
        put(self.actions, np.maximum(b.actions[slots], 0))
        put(self.stack_slots, b.stack_seqs(seqs) % b.capacity)
        put(self.returns, returns)
        put(self.discounts, discounts)
        put(self.boot_slots, boot % b.capacity)
        put(self.masks, b.masks[slots])
        fresh = seqs >= self._synced_total  # written since the last sync: no learned priority
        valid_t = torch.from_numpy(valid).to(dev)
        fresh_t = torch.from_numpy(fresh).to(dev)
        old = self.leaves.view(-1)[index]
        top = self.max_priority.pow(self.alpha) if self.prioritized \
            else torch.ones((), device=dev)
        keep = (old > 0) & ~fresh_t
        self.leaves.view(-1)[index] = torch.where(valid_t, torch.where(keep, old, top), 0.0)
        self._refresh_blocks(index)
        self._synced_total = total

    def _refresh_blocks(self, slot_index: torch.Tensor) -> None:
        blocks = slot_index // self.block  # [K'] (duplicates write equal values)
        self.block_sums[blocks] = self.leaves[blocks].double().sum(1)

    # ----------------------------------------------------------------- sampling
    def gather(self, slots: torch.Tensor, weights: torch.Tensor) -> Batch:
        """Batch tensors for the transitions at ``slots`` [B] (no validity check); frame stacks
        [B, S, H, W] uint8, or what ``frame_transform`` makes of them."""
        boot = self.boot_slots[slots]                                          # [B]
        frames = self.frames[self.stack_slots[slots]]                          # [B, S, H, W]
        next_frames = self.frames[self.stack_slots[boot]]
        if self.frame_transform is not None:
            frames, next_frames = self.frame_transform(frames), self.frame_transform(next_frames)
        return Batch(frames, self.vectors[slots], self.actions[slots], self.returns[slots],
                     next_frames, self.vectors[boot], self.discounts[slots], weights,
                     self.masks[boot])

    def draw(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(slots [B], their leaf priorities [B], the priority total []) by stratified
        proportional sampling on the device: the first half of :meth:`sample`."""
        device = self.device
        total = self.block_sums.sum()                                          # []
        strata = torch.arange(batch_size, device=device, dtype=torch.float64)
        values = (strata + torch.rand(batch_size, device=device, dtype=torch.float64)) \
            * (total / batch_size)                                             # [B]
        cum = self.block_sums.cumsum(0)                                        # [n_blocks]
        blk = torch.searchsorted(cum, values, right=True).clamp_max(self.n_blocks - 1)
        offset = values - (cum[blk] - self.block_sums[blk])                    # [B]
        inner = self.leaves[blk].double().cumsum(1)                            # [B, K]
        j = torch.searchsorted(inner, offset[:, None], right=True).squeeze(1)
        slots = (blk * self.block + j.clamp_max(self.block - 1)).clamp_max(self.capacity - 1)
        return slots, self.leaves.view(-1)[slots], total

    def weigh_and_gather(self, slots: torch.Tensor, leaf: torch.Tensor, total: torch.Tensor,
                         beta: torch.Tensor) -> tuple[torch.Tensor, Batch, torch.Tensor]:
        """(slots, batch, valid [B]) for :meth:`draw`'s result: importance weights
        (size * P)^-beta normalised by their maximum, and the gathered batch. A separate step so
        that, compiled, the per-row scans of the draw run one row per thread block: fused with
        the batch-wide maximum they ran in one single-warp kernel for 20-35 us (H100 trace)."""
        valid = leaf > 0                                                       # [B]
        if self.prioritized:
            probs = leaf.double() / total                                      # [B]
            w = torch.where(valid, (self.size * probs).clamp_min(1e-300).pow(-beta.double()),
                            0.0)
            weights = (w / w.max().clamp_min(1e-300)).float()
        else:
            weights = valid.float()
        return slots, self.gather(slots, weights), valid

    def sample(self, batch_size: int, beta: torch.Tensor) -> tuple[torch.Tensor, Batch,
                                                                   torch.Tensor]:
        """(slots [B], batch, valid [B]) by stratified proportional sampling on the device."""
        return self.weigh_and_gather(*self.draw(batch_size), beta)

    def update_priorities(self, slots: torch.Tensor, priorities: torch.Tensor,
                          valid: torch.Tensor) -> None:
        """Priorities (before ``alpha``) of sampled transitions; invalid draws keep 0."""
        p = priorities.float() + self.priority_eps                             # [B]
        self.leaves.view(-1)[slots] = torch.where(valid, p.pow(self.alpha), 0.0)
        self.max_priority.copy_(torch.maximum(self.max_priority,
                                              torch.where(valid, p, 0.0).max()))
        self._refresh_blocks(slots)


class FastUpdater:
    """Update steps of ``agent`` with on-device replay, as one CUDA graph when possible.

    The agent's algorithm must be the fast path's (:class:`FastDQNAlgorithm`: ``DQNAgent`` builds
    it where the config selects the fast path, or with ``fast_path=True``). ``use_graph`` (default:
    ``config.cuda_graphs``) needs CUDA and ``mixed_precision`` 'off' or 'bf16' (the fp16
    GradScaler syncs with the host): see :meth:`graph_enabled`. The first
    :data:`GRAPH_WARMUP_STEPS` calls run eagerly on a side stream and are real updates.
    """

    @staticmethod
    def graph_enabled(config: AgentConfig, device: torch.device,
                      use_graph: bool | None = None) -> bool:
        """Whether updates of ``config`` on ``device`` run as CUDA-graph replays."""
        wanted = config.cuda_graphs if use_graph is None else use_graph
        return bool(wanted) and device.type == "cuda" and config.mixed_precision != "fp16"

    def __init__(self, agent: UpdaterOwner, use_graph: bool | None = None) -> None:
        cfg = agent.config
        if not isinstance(agent.algorithm, FastDQNAlgorithm):
            raise TypeError("FastUpdater: the agent runs the reference update "
                            f"({type(agent.algorithm).__name__}); the fast path needs "
                            "FastDQNAlgorithm: build the agent with fast_path=True, or on CUDA "
                            "with cuda_graphs on")
        self.agent = agent
        self.device = agent.device
        self.use_graph = self.graph_enabled(cfg, self.device, use_graph)
        # sample_conv_input: samples hold the first conv's input (converted in the sampling,
        # which the prefetch runs beside the previous update's backward pass)
        encoder = agent.algorithm.network.encoder
        conv_dtype = autocast_dtype(self.device, cfg.mixed_precision) or torch.float32
        transform = (lambda frames: first_conv_input(encoder, frames, conv_dtype)) \
            if cfg.sample_conv_input else None
        self.replay = DeviceReplay(agent.replay, self.device, cfg.replay.prioritized,
                                   cfg.replay.alpha, cfg.replay.priority_eps, transform)
        with agent.replay_lock:
            agent.replay.take_dirty()  # start tracking touched slots
            self.replay.sync()
        self.beta = torch.zeros((), dtype=torch.float32, device=self.device)
        self.stats = torch.zeros(4, dtype=torch.float32, device=self.device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self._stepped = False  # an update ran (without the graph: the compiled parts are compiled)
        self.steps_per_replay = cfg.updates_per_graph if self.use_graph else 1
        self.prefetch = cfg.prefetch_next_batch
        self._warmup_left = GRAPH_WARMUP_STEPS
        self._side_stream = torch.cuda.Stream() if self.use_graph else None
        self._sample = self.replay.sample
        self._update_priorities = self.replay.update_priorities
        if self.use_graph and cfg.compile and cfg.compile_replay:
            # sampling + gather and the priority update: a few fused kernels instead of ~40
            options = cfg.torch_compile_options
            draw = torch.compile(self.replay.draw, options=options)
            weigh_and_gather = torch.compile(self.replay.weigh_and_gather, options=options)
            self._sample = lambda batch_size, beta: weigh_and_gather(*draw(batch_size), beta)
            self._update_priorities = torch.compile(self.replay.update_priorities, options=options)

    def _step(self, prefetched: tuple | None = None, prefetch: bool = False) -> tuple | None:
        """One full update on static tensors (this is what the graph captures). ``prefetched``:
        this update's (slots, batch, valid), drawn beside the previous update (its noise too);
        ``prefetch``: draw the next update's batch and noise beside this one's backward pass and
        optimizer step, and return it. The draw follows this update's priority update on the same
        stream, so it sees the priorities it would see in order."""
        cfg = self.agent.config
        algorithm = self.agent.algorithm
        if prefetched is None:
            with algorithm.overlapped_noise_reset():  # concurrent with the sampling where possible
                slots, batch, valid = self._sample(cfg.batch_size, self.beta)
        else:
            slots, batch, valid = prefetched
            algorithm.join_beside()  # the batch and the noise drawn beside the previous update
        loss, priorities, td_abs, q_taken = algorithm.loss(batch)
        following = None
        # the priority update and the statistics need only the loss: beside the backward pass
        with algorithm.beside_update():
            if cfg.replay.prioritized:
                self._update_priorities(slots, priorities.detach(), valid)
            self.stats[:3].copy_(torch.stack([loss.detach().float(), q_taken.mean(),
                                              td_abs.mean()]))
            if prefetch:
                following = self._sample(cfg.batch_size, self.beta)
        grad_norm = algorithm.apply_gradients(
            loss, after_backward=algorithm.reset_noise_beside if prefetch else None)
        self.stats[3].copy_(grad_norm)
        if cfg.target_update == "soft":
            with torch.no_grad():
                torch._foreach_lerp_(list(algorithm.target.parameters()),
                                     list(algorithm.network.parameters()), cfg.tau)
        if following is None:
            algorithm.join_beside()  # the next sampling reads the new priorities
        return following

    def _steps(self, count: int) -> None:
        """``count`` updates back to back (one graph replay), each sampling after the last one's
        priority update; with ``prefetch_next_batch`` all but the first draw their batch and
        noise beside the previous update (see :meth:`_step`)."""
        prefetched = None
        for index in range(count):
            prefetched = self._step(prefetched, prefetch=self.prefetch and index + 1 < count)

    def _capture(self) -> None:
        graph = torch.cuda.CUDAGraph()
        self.agent.algorithm.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self._steps(self.steps_per_replay)
        self.graph = graph

    def sync(self) -> None:
        """Copy the replay slots touched since the last call to the device."""
        agent = self.agent
        with agent.replay_lock:
            slots = agent.replay.take_dirty()
            self.replay.sync(slots)

    @property
    def warming_up(self) -> bool:
        """The first updates (compiling, autotuning, capturing) have not all run yet."""
        return self.graph is None if self.use_graph else not self._stepped

    def update(self, with_stats: bool = True) -> UpdateStats | None:
        """One gradient step, or ``updates_per_graph`` of them per replay once the graph is
        captured (syncs touched slots first); stats (the last step's) cost one host sync."""
        agent = self.agent
        cfg = agent.config
        if agent.env_steps < cfg.learning_starts or not agent.replay.can_sample(cfg.batch_size):
            return None
        self.sync()
        beta = agent.beta
        self.beta.fill_(beta)
        if not self.use_graph:
            self._step()
            self._stepped = True
            agent.updates += 1
        elif self.graph is not None:
            self.graph.replay()
            agent.updates += self.steps_per_replay
        else:  # warm up on a side stream, then capture
            # Acting goes on beside the warm-up, whose first call compiles and autotunes for
            # minutes with compile on (a policy node that stopped acting for that long would stop
            # answering); it waits only while the graph is captured.
            stream = self._side_stream
            stream.wait_stream(torch.cuda.current_stream())
            # once on a replay boundary, a replay's updates as the graph will run them: the
            # prefetch path's compiled parts compile here, never during the capture
            count = self.steps_per_replay if agent.updates % self.steps_per_replay == 0 else 1
            # the first call compiles and autotunes: on one stream, so kernels are timed alone
            first = self._warmup_left == GRAPH_WARMUP_STEPS
            with torch.cuda.stream(stream), \
                    agent.algorithm.serial() if first else contextlib.nullcontext():
                self._steps(count)
            torch.cuda.current_stream().wait_stream(stream)
            agent.updates += count
            self._warmup_left -= 1
            # capture on a multiple of steps_per_replay, so that replays land exactly on
            # the hard target-update boundaries
            if self._warmup_left <= 0 and agent.updates % self.steps_per_replay == 0:
                with agent.capture_lock:  # acting kernels from another thread must not land in it
                    self._capture()
        if cfg.target_update == "hard":  # steps_per_replay divides the interval (validated)
            agent.algorithm.update_target(agent.updates)
        if not with_stats:
            return None
        loss, mean_q, td, grad_norm = self.stats.tolist()
        return UpdateStats(loss=loss, mean_q=mean_q, td_error=td, beta=beta,
                           grad_norm=grad_norm, lr=agent.lr, updates=agent.updates)
