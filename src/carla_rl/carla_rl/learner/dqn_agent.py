"""Rainbow-style DQN agent, split like Tianshou/SB3 into

* :class:`DQNPolicy`    observation -> action (batched over envs, epsilon or noisy exploration,
                        action masks),
* :class:`DQNAlgorithm` the update: double-DQN / C51 targets, PER weights, AMP, grad clipping,
                        optimizer, target network,
* the replay memory     :mod:`carla_rl.learner.replay_buffer`,

and :class:`DQNAgent`, which owns the three, the counters and the RNGs, and is what the
``dqn_policy`` node drives: ``observe`` / ``record_action`` per env tick, ``act`` for a batch of
envs, ``update`` (from a background thread if wanted) while ``updates_due() > 0``.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
from carla_rl.learner.flat_adam import FlatAdam, flat_in_memory_order
from carla_rl.learner.networks import FrozenQNetwork, QNetwork, paired_outputs
from carla_rl.learner.replay_buffer import PrioritizedReplayBuffer, ReplayBuffer, ReplaySample

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class ActResult(NamedTuple):
    actions: np.ndarray   # [B] int64
    q_values: np.ndarray  # [B] float32, Q (expected value for C51) of the chosen action


@dataclass
class UpdateStats:
    loss: float
    mean_q: float
    td_error: float      # mean |target - Q| of the batch (expected values for C51)
    beta: float
    grad_norm: float     # before clipping
    lr: float
    updates: int


class Batch(NamedTuple):
    """A replay sample as device tensors."""
    frames: torch.Tensor       # [B, S, H, W] uint8 (fast path: maybe networks.first_conv_input)
    vectors: torch.Tensor      # [B, V] float32
    actions: torch.Tensor      # [B] int64
    returns: torch.Tensor      # [B] float32
    next_frames: torch.Tensor  # [B, S, H, W] uint8, like frames
    next_vectors: torch.Tensor  # [B, V] float32
    discounts: torch.Tensor    # [B] float32
    weights: torch.Tensor      # [B] float32
    next_masks: torch.Tensor   # [B] int64 bitmask of allowed actions at the bootstrap obs


def mask_from_bits(bits: torch.Tensor, num_actions: int) -> torch.Tensor:
    """int64 bitmasks [B] -> bool [B, A] (static shapes, graph-safe)."""
    shifts = torch.arange(num_actions, device=bits.device)                     # [A]
    return ((bits[:, None] >> shifts) & 1).bool()                               # [B, A]


def to_batch(sample: ReplaySample, device: torch.device) -> Batch:
    pin = device.type == "cuda"

    def move(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

    return Batch(move(sample.frames), move(sample.vectors), move(sample.actions),
                 move(sample.returns), move(sample.next_frames), move(sample.next_vectors),
                 move(sample.discounts), move(sample.weights), move(sample.next_masks))


def categorical_projection(next_probs: torch.Tensor, returns: torch.Tensor,
                           discounts: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Project the distribution r + discount * z (probabilities ``next_probs`` [B, N] on
    ``support`` [N]) back onto ``support``; returns [B, N]. Static shapes, no host syncs.

    A source atom's mass goes to the atoms on either side of its shifted position ``b`` (in
    atom units): atom j gets ``max(0, 1 - |b - j|)`` of it, all of it when ``b`` is an atom.
    Computed as a dense [B, N, N] weighting summed over the source atoms rather than as
    scatter-adds: one fused reduction kernel under torch.compile, with no atomics, so the
    sums come out the same in every run on CUDA too."""
    n_atoms = support.shape[0]
    v_min, v_max = support[0], support[-1]
    delta_z = (v_max - v_min) / (n_atoms - 1)
    tz = (returns[:, None] + discounts[:, None] * support[None, :])  # [B, N]
    tz = torch.minimum(torch.maximum(tz, v_min), v_max)
    # [B, N src] in [0, N-1]; clamped again because rounding can land a hair outside (seen on
    # CUDA: b = N-1 + ulp), which would lose that ulp of mass
    b = ((tz - v_min) / delta_z).clamp(0.0, n_atoms - 1)
    atoms = torch.arange(n_atoms, device=b.device, dtype=b.dtype)[:, None]       # [N dst, 1]
    share = (1.0 - (b[:, None, :] - atoms).abs()).clamp(min=0.0)              # [B, N dst, N src]
    return (share * next_probs[:, None, :]).sum(-1)                            # [B, N dst]


class DQNPolicy:
    """Observation -> action for a batch of envs.

    An acting copy that changes only through :meth:`load_weights` (the policy node's actor, synced
    every N updates) acts through :class:`FrozenQNetwork` copies built at each sync: one with the noisy
    layers' noise folded into their weights (``mu + sigma * eps``, the noise of the sync), one with
    ``mu`` alone (greedy). Acting then costs plain functional layers instead of the module stack
    recomputing every noisy weight matrix per call (batch-1 CPU act: docs/BENCHMARKS.md)."""

    def __init__(self, network: QNetwork, config: AgentConfig, device: torch.device,
                 rng: np.random.Generator) -> None:
        self.network = network
        self.config = config
        self.device = device
        self.rng = rng
        self._frozen: dict[bool, FrozenQNetwork] = {}  # with noise? -> frozen copy; built by load_weights

    def load_weights(self, state_dict: dict) -> None:
        """Copy the learner's weights and noise into this (acting) copy and freeze them for acting."""
        self.network.load_state_dict(state_dict)
        if self.network.encoder.space_to_depth:
            return  # acts through the module (FrozenQNetwork covers the plain and NHWC encoders)
        self._frozen = {noise: FrozenQNetwork(self.network, with_noise=noise) for noise in (True, False)}

    def q_values(self, frames: np.ndarray, vectors: np.ndarray | None,
                 noise: bool) -> torch.Tensor:
        frames_t = torch.as_tensor(frames).to(self.device, non_blocking=True)  # [B, S, H, W]
        if vectors is None:
            vectors = np.zeros((frames.shape[0], self.network.spec.vector_size), np.float32)
        vectors_t = torch.as_tensor(vectors, dtype=torch.float32).to(self.device)  # [B, V]
        frozen = self._frozen.get(noise and self.network.training)  # eval mode: noisy layers use mu
        with torch.inference_mode(), _autocast(self.device, self.config.mixed_precision):
            if frozen is not None:
                return frozen.q_values(frames_t, vectors_t).float()  # [B, A]
            return self.network.q_values(frames_t, vectors_t, noise=noise).float()  # [B, A]

    def act(self, frames: np.ndarray, vectors: np.ndarray | None, epsilon: float,
            noise: bool, action_mask: np.ndarray | None) -> ActResult:
        batch = frames.shape[0]
        num_actions = self.network.action_size
        mask = np.ones((batch, num_actions), dtype=np.bool_) if action_mask is None \
            else np.asarray(action_mask, dtype=np.bool_).reshape(batch, num_actions)
        if not mask.any(axis=1).all():
            raise ValueError("action_mask: every row must allow at least one action")
        q = self.q_values(frames, vectors, noise).cpu().numpy()  # [B, A]
        greedy = np.where(mask, q, -np.inf).argmax(axis=1)        # [B]
        actions = greedy
        if epsilon > 0.0:
            scores = np.where(mask, self.rng.random((batch, num_actions)), -1.0)  # [B, A]
            explore = self.rng.random(batch) < epsilon                            # [B]
            actions = np.where(explore, scores.argmax(axis=1), greedy)
        actions = actions.astype(np.int64)
        return ActResult(actions, q[np.arange(batch), actions].astype(np.float32))


def _on_stream(streams: tuple[torch.cuda.Stream, ...] | None, index: int):
    """``torch.cuda.stream(streams[index])``, or no-op context without side streams."""
    return torch.cuda.stream(streams[index]) if streams is not None else contextlib.nullcontext()


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """The dtype autocast computes in for ``mixed_precision`` ``mode`` on ``device`` (None: off;
    CPU never autocasts)."""
    return AMP_DTYPES.get(mode) if device.type == "cuda" else None


def _autocast(device: torch.device, mode: str):
    dtype = autocast_dtype(device, mode)
    # No weight-cast cache: it would not survive CUDA-graph capture and saves little here.
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None, cache_enabled=False)


class DQNAlgorithm:
    """Loss, optimizer, AMP scaler and target network of the online ``network``."""

    def __init__(self, network: QNetwork, target: QNetwork, config: AgentConfig,
                 device: torch.device, capturable: bool = False) -> None:
        self.network = network
        self.target = target
        self.config = config
        self.device = device
        use_scaler = device.type == "cuda" and config.mixed_precision == "fp16"
        compiling = config.compile and device.type == "cuda"
        # torch.compile of clipping + Adam (graph path, no GradScaler): foreach Adam, which
        # inductor turns into a few kernels spread over all SMs; the fused kernel gives each
        # 64K-element chunk one block (a latency of ~75 us per update on an H200)
        self.compiled_optimizer = compiling and capturable and config.compile_optimizer \
            and not use_scaler
        # Fused Adam on CUDA: one kernel for all parameters, step counter on the device.
        fused = device.type == "cuda" and not self.compiled_optimizer
        self.optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, eps=config.adam_eps,
                                          capturable=capturable, fused=fused,
                                          foreach=True if self.compiled_optimizer else None)
        self.scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)
        self.target.load_state_dict(self.network.state_dict())
        self.target.requires_grad_(False)
        # the fast path only: the eager path stays the straightforward reference implementation
        fast_path = device.type == "cuda" and capturable
        self.parallel_next_passes = fast_path and config.parallel_next_passes
        self.merge_online_passes = fast_path and config.merge_online_passes \
            and not self.parallel_next_passes
        # side streams of the next-state passes (target, online selection); see _parallel_loss
        self._next_streams = (torch.cuda.Stream(device), torch.cuda.Stream(device)) \
            if self.parallel_next_passes else None
        self.grouped_next_passes = self.parallel_next_passes and config.grouped_next_passes
        self._online_output = self._online_output_eager
        self._next_select = self._next_select_eager
        self._next_target = self._next_target_eager
        self._next_pair = self._next_pair_eager
        self._loss_terms = self._loss_terms_eager
        options = config.torch_compile_options if compiling else {}
        if compiling:
            # The loss (three forward passes + C51 / TD math) is where kernel fusion pays; the
            # modules themselves stay plain (state_dict keys, deepcopy for actor copies). With
            # parallel next passes each stream's part is compiled on its own (compiled code
            # launches on the stream that is current when it is called).
            self._serial_loss = torch.compile(self._serial_loss, options=options)
            self._online_output = torch.compile(self._online_output_eager, options=options)
            self._next_select = torch.compile(self._next_select_eager, options=options)
            self._next_target = torch.compile(self._next_target_eager, options=options)
            self._next_pair = torch.compile(self._next_pair_eager, options=options)
            self._loss_terms = torch.compile(self._loss_terms_eager, options=options)
        self._scaled_step = torch.compile(self._scaled_step_eager, options=options) \
            if self.compiled_optimizer else self._scaled_step_eager
        # flat_optimizer: parameters, gradients and moments in flat buffers (~4 kernels)
        self.flat_adam = FlatAdam(self.optimizer, config.grad_clip_norm, compile=True,
                                  options=options) \
            if self.compiled_optimizer and config.flat_optimizer else None
        if self.flat_adam is not None:
            self._clip_and_step = self.flat_adam.step
        elif self.compiled_optimizer:
            self._clip_and_step = self._norm_then_compiled_step
        else:
            self._clip_and_step = self._clip_and_step_eager
        self._reset_noise = torch.compile(self._reset_noise_eager, options=options) \
            if compiling and capturable and config.compile_noise else self._reset_noise_eager

    def _reset_noise_eager(self) -> None:
        self.network.reset_noise()
        self.target.reset_noise()

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          torch.Tensor]:
        """(loss [], priorities [B], |td| [B], Q of taken actions [B]); no host syncs."""
        if self.parallel_next_passes:
            return self._parallel_loss(batch)
        return self._serial_loss(batch)

    def _serial_loss(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """:meth:`loss` with the forward passes one after the other (compiled as a whole)."""
        cfg = self.config
        with _autocast(self.device, cfg.mixed_precision):
            if cfg.double and self.merge_online_passes:
                # One online pass over [states; next states] (same weights, same noise): fewer
                # kernels, more convolution work in the backward pass. Measured neutral at batch
                # 256 on an H200 (630 vs 632 updates/s, docs/BENCHMARKS.md); on a CPU the extra
                # work costs, hence the CUDA-graph path only.
                size = batch.actions.shape[0]
                both = self.network(torch.cat([batch.frames, batch.next_frames]),
                                    torch.cat([batch.vectors, batch.next_vectors]))  # [2B, ...]
                out = both[:size]
                next_select = self.network.q_from_output(both[size:].detach())  # [B, A]
            else:
                out = self.network(batch.frames, batch.vectors)  # [B, A, N] or [B, A]
                if cfg.double:  # online net selects, target net evaluates
                    with torch.no_grad():
                        next_select = self.network.q_values(batch.next_frames,
                                                            batch.next_vectors)
            with torch.no_grad():
                next_target = self.target(batch.next_frames, batch.next_vectors)
                if not cfg.double:
                    next_select = self.target.q_from_output(next_target)
        return self._loss_terms_eager(batch, out, next_select, next_target)

    def _parallel_loss(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """:meth:`loss` with the two no-grad next-state passes (online selection, target
        evaluation) forked onto side streams, concurrent with the online pass, and joined before
        the loss terms (CUDA; on a CPU the same calls run in order, which is how it is tested).

        The passes' kernels are small and leave much of the GPU idle; run concurrently, a
        batch-256 update took 558 instead of 656 us on an H200 (docs/BENCHMARKS.md), although
        the side streams, not the online pass, are then the longer branch (profiled). Memory is
        safe without ``record_stream``: everything a side stream reads or allocates here is used
        or freed only after the join, and the next fork waits for the current stream again."""
        double = self.config.double
        streams = self._next_streams
        if streams is not None:
            main = torch.cuda.current_stream(self.device)
            for stream in streams:
                stream.wait_stream(main)
        next_select = None
        if double and self.grouped_next_passes:  # both passes as one, on one side stream
            with _on_stream(streams, 0):
                next_select, next_target = self._next_pair(batch.next_frames, batch.next_vectors)
        else:
            with _on_stream(streams, 0):
                next_target = self._next_target(batch.next_frames, batch.next_vectors)
            if double:
                with _on_stream(streams, 1):
                    next_select = self._next_select(batch.next_frames, batch.next_vectors)
        out = self._online_output(batch.frames, batch.vectors)
        if streams is not None:
            for stream in streams:
                main.wait_stream(stream)
        if not double:
            next_select = self._target_q(next_target)
        return self._loss_terms(batch, out, next_select, next_target)

    def _online_output_eager(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device, self.config.mixed_precision):
            return self.network(frames, vectors)  # [B, A, N] or [B, A]

    @torch.no_grad()
    def _next_select_eager(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device, self.config.mixed_precision):
            return self.network.q_values(frames, vectors)  # [B, A]

    @torch.no_grad()
    def _next_target_eager(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        with _autocast(self.device, self.config.mixed_precision):
            return self.target(frames, vectors)  # [B, A, N] or [B, A]

    @torch.no_grad()
    def _next_pair_eager(self, frames: torch.Tensor,
                         vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(online selection Q [B, A], target output) of the next states in one paired pass."""
        with _autocast(self.device, self.config.mixed_precision):
            select_out, target_out = paired_outputs(self.network, self.target, frames, vectors)
            return self.network.q_from_output(select_out), target_out

    @torch.no_grad()
    def _target_q(self, next_target: torch.Tensor) -> torch.Tensor:
        return self.target.q_from_output(next_target)  # [B, A]

    def _loss_terms_eager(self, batch: Batch, out: torch.Tensor, next_select: torch.Tensor,
                          next_target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The loss from the online output for the states (with grad), the selection Q-values
        [B, A] and the target output for the next states (no grad)."""
        cfg = self.config
        arange = torch.arange(batch.actions.shape[0], device=batch.actions.device)  # [B]
        allowed = mask_from_bits(batch.next_masks, next_select.shape[1])  # [B, A]
        next_actions = next_select.masked_fill(~allowed, float("-inf")).argmax(dim=1)  # [B]
        if cfg.distributional:
            support = self.network.support  # [N]
            with torch.no_grad():
                # the chosen action's row first, then its softmax: B rows, not B * A
                next_probs = next_target[arange, next_actions].float().softmax(-1)  # [B, N]
                target_probs = categorical_projection(next_probs, batch.returns,
                                                      batch.discounts, support)   # [B, N]
            log_probs = out[arange, batch.actions].float().log_softmax(-1)      # [B, N]
            per_sample = -(target_probs * log_probs).sum(-1)                   # [B]
            q_taken = (log_probs.detach().exp() * support).sum(-1)              # [B]
            td = (target_probs * support).sum(-1) - q_taken                     # [B]
            priorities = per_sample.detach()
        else:
            with torch.no_grad():
                next_q = next_target.float()[arange, next_actions]              # [B]
                target_q = batch.returns + batch.discounts * next_q             # [B]
            q_pred = out.float()[arange, batch.actions]                        # [B]
            per_sample = nn.functional.huber_loss(q_pred, target_q, reduction="none",
                                                  delta=cfg.huber_delta)       # [B]
            q_taken = q_pred.detach()
            td = target_q - q_taken
            priorities = td.abs()
        loss = (batch.weights * per_sample).mean()
        return loss, priorities, td.abs(), q_taken

    @contextlib.contextmanager
    def overlapped_noise_reset(self):
        """Resample both networks' noise while the body runs (the replay sampling of the fast
        path): on a side stream, joined at exit, where there are side streams; else first. Pass
        ``reset_noise=False`` to the :meth:`step` that follows. The noise buffers are read only
        after the join, and the fork waits for everything the current stream did before."""
        self.reset_noise_beside()
        try:
            yield
        finally:
            self.join_beside()

    def step(self, batch: Batch, reset_noise: bool = True) -> tuple[torch.Tensor, ...]:
        """One gradient step (resampling the noise first unless ``reset_noise`` is False).
        Returns device tensors (loss, priorities, |td|, q, grad_norm)."""
        if reset_noise:
            self._reset_noise()
        loss, priorities, td_abs, q_taken = self.loss(batch)
        grad_norm = self.apply_gradients(loss)
        return loss.detach(), priorities, td_abs, q_taken, grad_norm

    def apply_gradients(self, loss: torch.Tensor,
                        after_backward: Callable[[], None] | None = None) -> torch.Tensor:
        """Backward pass of ``loss``, gradient clipping and one optimizer step (the second half
        of :meth:`step`); returns the gradient norm before clipping. ``after_backward`` runs
        between the backward pass and the optimizer step (e.g. :meth:`reset_noise_beside`)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if after_backward is not None:
            after_backward()
        if self.compiled_optimizer:
            return self._clip_and_step()
        self.scaler.unscale_(self.optimizer)
        grad_norm = self._clip_and_step_eager(use_scaler=True)
        self.scaler.update()
        return grad_norm

    @contextlib.contextmanager
    def serial(self):
        """Everything on the current stream while the body runs (no side streams): for the
        first updates, which compile and in which Triton times its kernel variants: measured
        beside other streams' kernels, it picked variants up to 8 us slower (H100 traces)."""
        streams, self._next_streams = self._next_streams, None
        try:
            yield
        finally:
            self._next_streams = streams

    @contextlib.contextmanager
    def beside_update(self):
        """Run the body on a side stream, concurrent with what the current stream does next
        (the replay sampling, or the backward pass and the optimizer step), where there are side
        streams; else in order. The fork waits for everything the current stream did before; the caller joins
        with :meth:`join_beside` before anything reads what the body wrote. The body's inputs
        must stay referenced until then (no ``record_stream``)."""
        streams = self._next_streams
        if streams is None:
            yield
            return
        streams[1].wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(streams[1]):
            yield

    def reset_noise_beside(self) -> None:
        """Resample both networks' noise beside what the current stream does next (the replay
        sampling; or the optimizer step, which reads no noise, once the backward pass has read the
        old noise); join with :meth:`join_beside` before the next pass."""
        with self.beside_update():
            self._reset_noise()

    def join_beside(self) -> None:
        """The current stream waits for the body of the last :meth:`beside_update`."""
        if self._next_streams is not None:
            torch.cuda.current_stream(self.device).wait_stream(self._next_streams[1])

    def _clip_and_step_eager(self, use_scaler: bool = False) -> torch.Tensor:
        """Clip the global gradient norm, then one optimizer step; returns the norm before
        clipping. (With ``compile_optimizer``, where no scaler is used:
        :meth:`_norm_then_compiled_step`.)"""
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm > 0 else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), max_norm,
                                             foreach=True)
        if use_scaler:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()
        return grad_norm

    def _norm_then_compiled_step(self) -> torch.Tensor:
        """:meth:`_clip_and_step_eager` for ``compile_optimizer``: the global norm as one copy
        of all gradients and one reduction (compiled, it took one kernel per parameter; the
        multi-tensor norm kernel took 14 us on an H100), then clipping + Adam compiled
        (:meth:`_scaled_step_eager`). Each gradient enters the copy as a view in its memory
        order (channels-last conv gradients would otherwise be copied twice). Returns the norm
        before clipping."""
        grads = [p.grad for p in self.network.parameters() if p.grad is not None]
        grad_norm = torch.linalg.vector_norm(torch.cat([flat_in_memory_order(g) for g in grads]))
        self._scaled_step(grad_norm)
        return grad_norm

    def _scaled_step_eager(self, grad_norm: torch.Tensor) -> None:
        """Scale the gradients by min(1, max_norm / norm) as ``clip_grad_norm_`` does, then
        one optimizer step."""
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm > 0 else float("inf")
        grads = [p.grad for p in self.network.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, (max_norm / (grad_norm + 1e-6)).clamp(max=1.0))
        self.optimizer.step()

    @torch.no_grad()
    def update_target(self, updates: int) -> None:
        """Hard copy every ``target_update_interval`` updates, or Polyak averaging each update."""
        online = list(self.network.parameters())
        target = list(self.target.parameters())
        if self.config.target_update == "soft":
            torch._foreach_lerp_(target, online, self.config.tau)
        elif updates % self.config.target_update_interval == 0:
            torch._foreach_copy_(target, online)


class DQNAgent:
    """Policy + algorithm + replay + counters; the learner core driven by the policy node."""

    def __init__(self, state_size: Any, action_size: int = 6, config: AgentConfig | None = None,
                 device: str | torch.device = "cpu", seed: int | None = None) -> None:
        self.spec = ObservationSpec.coerce(state_size)
        self.action_size = int(action_size)
        self.config = config if config is not None else AgentConfig()
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("DQNAgent: device 'cuda' requested but CUDA is not available")
        self.seed = seed
        if self.device.type == "cuda" and self.config.tf32_matmul:
            torch.backends.cuda.matmul.allow_tf32 = True  # process-wide (documented in the config)
        if self.device.type == "cuda" and self.config.cudnn_benchmark:
            torch.backends.cudnn.benchmark = True  # process-wide (documented in the config)
        if seed is not None:
            torch.manual_seed(seed)
        seeds = np.random.SeedSequence(seed).spawn(2)
        self.act_rng = np.random.default_rng(seeds[0])
        replay_rng = np.random.default_rng(seeds[1])
        cfg = self.config
        self.online = QNetwork(self.spec, self.action_size, cfg).to(self.device)
        self.target = QNetwork(self.spec, self.action_size, cfg).to(self.device)
        self.policy = DQNPolicy(self.online, cfg, self.device, self.act_rng)
        # CUDA-graph capture of the update needs an optimizer whose step counter lives on the GPU.
        self.use_fast_path = self.device.type == "cuda" and cfg.cuda_graphs
        if self.use_fast_path and cfg.channels_last:
            self.online.use_channels_last()
            self.target.use_channels_last()
        if self.use_fast_path and cfg.space_to_depth:
            self.online.use_space_to_depth(later_convs=cfg.space_to_depth_later_convs)
            self.target.use_space_to_depth(later_convs=cfg.space_to_depth_later_convs)
        self.algorithm = DQNAlgorithm(self.online, self.target, cfg, self.device,
                                      capturable=self.use_fast_path)
        self._fast = None  # FastUpdater, built on the first update when use_fast_path
        rc = cfg.replay
        if rc.prioritized:
            self.replay: ReplayBuffer = PrioritizedReplayBuffer(
                rc.capacity, self.spec, rc.n_step, cfg.gamma, rc.alpha, rc.priority_eps,
                rng=replay_rng)
        else:
            self.replay = ReplayBuffer(rc.capacity, self.spec, rc.n_step, cfg.gamma,
                                       rng=replay_rng)
        self.env_steps = 0   # actions recorded (transitions started)
        self.updates = 0     # gradient steps done
        self.replay_lock = threading.Lock()
        # replay files of the last checkpoint written / restored (checkpoint.ReplaySnapshot): the next
        # one writes only the chunks changed since; last_replay_write: what that write did
        self.replay_snapshot = None
        self.last_replay_write = None
        # Held by the learner only while it captures a CUDA graph (once): acting kernels from
        # another thread must not land in the capture.
        self.capture_lock = threading.Lock()

    # ----------------------------------------------------------------- schedules
    @property
    def epsilon(self) -> float:
        ex = self.config.exploration
        frac = min(1.0, self.env_steps / ex.epsilon_decay_steps)
        return ex.epsilon_start + frac * (ex.epsilon_end - ex.epsilon_start)

    @property
    def beta(self) -> float:
        rc = self.config.replay
        frac = min(1.0, self.updates / rc.beta_anneal_updates)
        return rc.beta_start + frac * (1.0 - rc.beta_start)

    @property
    def lr(self) -> float:
        return float(self.algorithm.optimizer.param_groups[0]["lr"])

    @property
    def updates_per_call(self) -> int:
        """Gradient steps one :meth:`update` call makes (``updates_per_graph`` on the graph path)."""
        return self.config.updates_per_graph if self.use_fast_path else 1

    def updates_due(self) -> int:
        """Gradient steps owed by the replay ratio (``gradient_steps`` per ``train_frequency``
        env steps after ``learning_starts``)."""
        cfg = self.config
        if self.env_steps < cfg.learning_starts:
            return 0
        rounds = (self.env_steps - cfg.learning_starts) // cfg.train_frequency + 1
        return max(0, rounds * cfg.gradient_steps - self.updates)

    # ----------------------------------------------------------------- stream API
    def observe(self, env_id: int, frame: np.ndarray, vector: np.ndarray | None, reward: float,
                terminated: bool, truncated: bool, episode_start: bool,
                action_mask: np.ndarray | None = None) -> int:
        """Store one env tick (see :meth:`ReplayBuffer.observe`); pass the ``action_mask``
        given to ``act`` so bootstrap targets only consider allowed actions."""
        reward = reward * self.config.reward_scale
        with self.replay_lock:
            return self.replay.observe(env_id, frame, vector, reward, terminated, truncated,
                                       episode_start, action_mask)

    def record_action(self, env_id: int, action: int) -> None:
        with self.replay_lock:
            self.replay.record_action(env_id, action)
        self.env_steps += 1

    def observe_many(self, env_ids, frames, vectors, rewards, terminated, truncated,
                     episode_start, action_masks=None) -> np.ndarray:
        rewards = np.asarray(rewards, dtype=np.float32) * self.config.reward_scale
        with self.replay_lock:
            return self.replay.observe_many(env_ids, frames, vectors, rewards, terminated,
                                            truncated, episode_start, action_masks)

    def record_actions(self, env_ids, actions) -> None:
        with self.replay_lock:
            self.replay.record_actions(env_ids, actions)
        self.env_steps += len(actions)

    # ----------------------------------------------------------------- acting
    def act(self, frames: np.ndarray, vectors: np.ndarray | None = None, explore: bool = True,
            action_mask: np.ndarray | None = None) -> ActResult:
        """Actions for B envs: frames uint8 [B, S, H, W], vectors float32 [B, V]."""
        cfg = self.config
        if explore and self.env_steps < cfg.learning_starts:
            epsilon, noise = 1.0, True  # warm-up: uniform over the allowed actions
        elif explore:
            epsilon, noise = (0.0, True) if cfg.noisy else (self.epsilon, False)
        else:
            epsilon, noise = cfg.exploration.eval_epsilon, False
        with self.capture_lock:
            return self.policy.act(frames, vectors, epsilon, noise, action_mask)

    # ----------------------------------------------------------------- learning
    def update(self) -> UpdateStats | None:
        """One gradient step on a replay batch (:attr:`updates_per_call` steps on the CUDA-graph
        path; the stats are the last one's); None before ``learning_starts``."""
        cfg = self.config
        if self.env_steps < cfg.learning_starts:
            return None
        if self.use_fast_path:
            if self._fast is None:
                from carla_rl.learner.fast_update import FastUpdater
                self._fast = FastUpdater(self)
            return self._fast.update()
        beta = self.beta
        with self.replay_lock:
            if not self.replay.can_sample(cfg.batch_size):
                return None
            sample = self.replay.sample(cfg.batch_size, beta)
        batch = to_batch(sample, self.device)
        loss, priorities, td_abs, q_taken, grad_norm = self.algorithm.step(batch)
        self.updates += 1
        self.algorithm.update_target(self.updates)
        stats = torch.stack([loss.float(), q_taken.mean(), td_abs.mean(),
                             grad_norm.float()]).tolist()  # one host sync
        if cfg.replay.prioritized:
            with self.replay_lock:
                self.replay.update_priorities(sample.indices, priorities.float().cpu().numpy())
        return UpdateStats(loss=stats[0], mean_q=stats[1], td_error=stats[2], beta=beta,
                           grad_norm=stats[3], lr=self.lr, updates=self.updates)

    # ----------------------------------------------------------------- persistence
    def state_dict(self, include_replay: bool = False) -> dict[str, Any]:
        """Everything needed for an exact resume (see :mod:`carla_rl.learner.checkpoint`)."""
        from carla_rl.learner import checkpoint
        return checkpoint.agent_state(self, include_replay)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from carla_rl.learner import checkpoint
        checkpoint.restore_agent(self, state)
