"""The Rainbow-DQN algorithm: the update of an online network against its target network.

* :func:`categorical_projection`  C51: the distribution r + discount * z projected onto the support,
* :class:`DQNAlgorithm`           loss (double-DQN selection, n-step targets from the replay, C51
                                  cross-entropy or Huber, PER importance weights), backward pass,
                                  gradient clipping, Adam, target network (hard copy or Polyak),
* :class:`Batch`, :class:`UpdateStats`  what an update takes and returns.

On CUDA the same loss can run with its next-state passes on side streams and compiled parts
(switches of :class:`AgentConfig`); :mod:`carla_rl.learner.fast_update` captures it with the
on-device replay in one CUDA graph. The eager CPU path is the reference the tests compare with.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from carla_rl.learner.agent_config import AgentConfig
from carla_rl.learner.flat_adam import FlatAdam, flat_in_memory_order
from carla_rl.learner.networks import QNetwork, paired_outputs
from carla_rl.learner.replay_buffer import ReplaySample

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def _on_stream(streams: tuple[torch.cuda.Stream, ...] | None, index: int):
    """``torch.cuda.stream(streams[index])``, or no-op context without side streams."""
    return torch.cuda.stream(streams[index]) if streams is not None else contextlib.nullcontext()


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """The dtype autocast computes in for ``mixed_precision`` ``mode`` on ``device`` (None: off;
    CPU never autocasts)."""
    return AMP_DTYPES.get(mode) if device.type == "cuda" else None


def autocast(device: torch.device, mode: str):
    dtype = autocast_dtype(device, mode)
    # No weight-cast cache: it would not survive CUDA-graph capture and saves little here.
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None, cache_enabled=False)


class DQNAlgorithm:
    """Loss, optimizer, AMP scaler and target network of the online ``network``.

    The reference update first (:meth:`loss` -> :meth:`step` -> :meth:`update_target`), then the
    fast path's variants of its parts, which the constructor selects on CUDA with ``capturable``
    (the CUDA-graph path) and the config's switches."""

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

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          torch.Tensor]:
        """(loss [], priorities [B], |td| [B], Q of taken actions [B]); no host syncs."""
        if self.parallel_next_passes:
            return self._parallel_loss(batch)
        return self._serial_loss(batch)

    def _serial_loss(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """:meth:`loss` with the forward passes one after the other (compiled as a whole)."""
        cfg = self.config
        with autocast(self.device, cfg.mixed_precision):
            out = self.network(batch.frames, batch.vectors)  # [B, A, N] or [B, A]
            if cfg.double:  # online net selects, target net evaluates
                with torch.no_grad():
                    next_select = self.network.q_values(batch.next_frames,
                                                        batch.next_vectors)  # [B, A]
            with torch.no_grad():
                next_target = self.target(batch.next_frames, batch.next_vectors)
                if not cfg.double:
                    next_select = self.target.q_from_output(next_target)
        return self._loss_terms_eager(batch, out, next_select, next_target)

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

    @torch.no_grad()
    def update_target(self, updates: int) -> None:
        """Hard copy every ``target_update_interval`` updates, or Polyak averaging each update."""
        online = list(self.network.parameters())
        target = list(self.target.parameters())
        if self.config.target_update == "soft":
            torch._foreach_lerp_(target, online, self.config.tau)
        elif updates % self.config.target_update_interval == 0:
            torch._foreach_copy_(target, online)

    def _reset_noise_eager(self) -> None:
        self.network.reset_noise()
        self.target.reset_noise()

    # ------------------------------------------------------------------------------------------
    # The fast path (CUDA-graph path on CUDA): the next-state passes on side streams, work beside
    # the update, the compiled clipping + Adam. Same math as the reference methods above (tests
    # compare them on CPU, where the side streams run in order).

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
        with autocast(self.device, self.config.mixed_precision):
            return self.network(frames, vectors)  # [B, A, N] or [B, A]

    @torch.no_grad()
    def _next_select_eager(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.mixed_precision):
            return self.network.q_values(frames, vectors)  # [B, A]

    @torch.no_grad()
    def _next_target_eager(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        with autocast(self.device, self.config.mixed_precision):
            return self.target(frames, vectors)  # [B, A, N] or [B, A]

    @torch.no_grad()
    def _next_pair_eager(self, frames: torch.Tensor,
                         vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(online selection Q [B, A], target output) of the next states in one paired pass."""
        with autocast(self.device, self.config.mixed_precision):
            select_out, target_out = paired_outputs(self.network, self.target, frames, vectors)
            return self.network.q_from_output(select_out), target_out

    @torch.no_grad()
    def _target_q(self, next_target: torch.Tensor) -> torch.Tensor:
        return self.target.q_from_output(next_target)  # [B, A]

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
