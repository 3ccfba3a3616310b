"""The fast path's update: the reference update (:class:`~carla_rl.learner.algorithm.DQNAlgorithm`)
with the same math arranged for a GPU.

:class:`FastDQNAlgorithm` runs where the config selects the fast path (``cuda_graphs`` on a CUDA
device; ``DQNAgent(fast_path=True)`` anywhere), together with
:class:`carla_rl.learner.fast_update.FastUpdater`, which samples on the device and captures the
whole update in one CUDA graph. What it adds to the reference, each by a switch of
:class:`~carla_rl.learner.agent_config.AgentConfig` (their A/B figures:
``carla_rl/learner/README.md``):

* the networks' layout: ``channels_last``, ``space_to_depth`` (+ ``space_to_depth_later_convs``);
  same weights, same state_dict,
* ``mixed_precision``: autocast of the forward passes (bf16; fp16 with a GradScaler),
* ``compile``: torch.compile of the loss (+ ``compile_noise``: of the noise resampling),
* the optimizer: a capturable Adam (fused), or with ``compile_optimizer`` the global norm and
  then clipping + Adam compiled, over flat buffers with ``flat_optimizer`` (``flat_adam.py``),
* ``parallel_next_passes`` / ``grouped_next_passes``: the two no-grad next-state passes on side
  CUDA streams, or as one paired pass on one side stream,
* work beside the update for ``FastUpdater``: the noise resampled while the replay is sampled,
  the priority update beside the backward pass.

On a CPU the same code runs in order and uncompiled (no streams, no autocast, no capturable
Adam): that is how ``tests/learner/test_fast_path_equivalence.py`` compares it with the
reference. On CUDA the tests in ``tests/learner/test_cuda.py`` do.
"""

from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from carla_rl.learner.agent_config import AgentConfig
from carla_rl.learner.algorithm import Batch, DQNAlgorithm
from carla_rl.learner.flat_adam import FlatAdam, flat_in_memory_order
from carla_rl.learner.networks import QNetwork, paired_outputs

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(device: torch.device, mode: str) -> torch.dtype | None:
    """The dtype autocast computes in for ``mixed_precision`` ``mode`` on ``device`` (None: off;
    CPU never autocasts)."""
    return AMP_DTYPES.get(mode) if device.type == "cuda" else None


def autocast(device: torch.device, mode: str):
    dtype = autocast_dtype(device, mode)
    # No weight-cast cache: it would not survive CUDA-graph capture and saves little here.
    return torch.autocast(device_type=device.type, dtype=dtype or torch.bfloat16,
                          enabled=dtype is not None, cache_enabled=False)


def _on_stream(streams: tuple[torch.cuda.Stream, ...] | None, index: int):
    """``torch.cuda.stream(streams[index])``, or no-op context without side streams."""
    return torch.cuda.stream(streams[index]) if streams is not None else contextlib.nullcontext()


class FastDQNAlgorithm(DQNAlgorithm):
    """:class:`DQNAlgorithm` with the fast path's switches (see the module doc). Sets the
    networks' layout (channels-last, space-to-depth) as the config asks, on any device."""

    def __init__(self, network: QNetwork, target: QNetwork, config: AgentConfig,
                 device: torch.device) -> None:
        for net in (network, target):
            if config.channels_last:
                net.use_channels_last()
            if config.space_to_depth:
                net.use_space_to_depth(later_convs=config.space_to_depth_later_convs)
        super().__init__(network, target, config)
        self.device = device
        cuda = device.type == "cuda"
        # torch.compile on CUDA only (on a CPU the same functions run uncompiled)
        compiling = config.compile and cuda
        options = config.torch_compile_options if compiling else {}

        def compiled(fn: Callable) -> Callable:
            return torch.compile(fn, options=options) if compiling else fn

        self.scaler = torch.amp.GradScaler(device.type,
                                           enabled=cuda and config.mixed_precision == "fp16")
        # compile_optimizer (no GradScaler): the global norm, then clipping + Adam compiled, as
        # foreach Adam, which inductor turns into a few kernels spread over all SMs (the fused
        # kernel gives each 64K-element chunk one block: ~75 us per update on an H200)
        self.compiled_optimizer = config.compile and config.compile_optimizer \
            and not self.scaler.is_enabled()
        # replaces the reference's Adam (same math): step counters on the device for the graph
        # capture, and one fused kernel for all parameters where not compiled
        self.optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, eps=config.adam_eps,
                                          capturable=cuda, fused=cuda and not self.compiled_optimizer,
                                          foreach=True if self.compiled_optimizer else None)
        # flat_optimizer: parameters, gradients and moments in flat buffers (~4 kernels)
        self.flat_adam = FlatAdam(self.optimizer, config.grad_clip_norm, compile=compiling,
                                  options=options) \
            if self.compiled_optimizer and config.flat_optimizer else None
        if self.flat_adam is not None:
            self._clip_and_step = self.flat_adam.step
        elif self.compiled_optimizer:
            self._clip_and_step = self._norm_then_scaled_step
        else:
            self._clip_and_step = self._clip_and_step_eager
        self._scaled_step = compiled(self._scaled_step_eager)
        self._reset_noise = compiled(super().reset_noise) if config.compile_noise \
            else super().reset_noise
        # the loss: serial passes, or the next-state passes on side streams (_parallel_loss)
        self.parallel_next_passes = config.parallel_next_passes
        self.grouped_next_passes = self.parallel_next_passes and config.grouped_next_passes
        self._next_streams = (torch.cuda.Stream(device), torch.cuda.Stream(device)) \
            if cuda and self.parallel_next_passes else None
        # The loss (three forward passes + C51 / TD math) is where kernel fusion pays; the
        # modules themselves stay plain (state_dict keys, deepcopy for actor copies). With
        # parallel next passes each stream's part is compiled on its own (compiled code
        # launches on the stream that is current when it is called).
        self._serial_loss = compiled(self._serial_loss_eager)
        self._online_output = compiled(self._online_output_eager)
        self._next_select = compiled(self._next_select_eager)
        self._next_target = compiled(self._next_target_eager)
        self._next_pair = compiled(self._next_pair_eager)
        self._loss_terms = compiled(self.loss_terms)

    # ------------------------------------------------------------------------------------------
    # the reference's steps, fast

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          torch.Tensor]:
        """:meth:`DQNAlgorithm.loss`: with the next-state passes on side streams where
        ``parallel_next_passes``, else serial; compiled with ``compile``."""
        if self.parallel_next_passes:
            return self._parallel_loss(batch)
        return self._serial_loss(batch)

    def apply_gradients(self, loss: torch.Tensor,
                        after_backward: Callable[[], None] | None = None) -> torch.Tensor:
        """:meth:`DQNAlgorithm.apply_gradients` (through the GradScaler with fp16, or the
        compiled / flat optimizer); ``after_backward`` runs between the backward pass and the
        optimizer step (e.g. :meth:`reset_noise_beside`)."""
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

    def reset_noise(self) -> None:
        """:meth:`DQNAlgorithm.reset_noise` (compiled with ``compile_noise``)."""
        self._reset_noise()

    # ------------------------------------------------------------------------------------------
    # the loss

    def _serial_loss_eager(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """The reference loss with its forward passes under autocast (compiled as a whole)."""
        with autocast(self.device, self.config.mixed_precision):
            out, next_select, next_target = self.forward_passes(batch)
        return self.loss_terms(batch, out, next_select, next_target)

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

    # ------------------------------------------------------------------------------------------
    # the optimizer step

    def _clip_and_step_eager(self, use_scaler: bool = False) -> torch.Tensor:
        """Clip the global gradient norm, then one optimizer step (through the GradScaler with
        ``use_scaler``); returns the norm before clipping."""
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm > 0 else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), max_norm,
                                             foreach=True)
        if use_scaler:
            self.scaler.step(self.optimizer)
        else:
            self.optimizer.step()
        return grad_norm

    def _norm_then_scaled_step(self) -> torch.Tensor:
        """:meth:`_clip_and_step_eager` for ``compile_optimizer`` without ``flat_optimizer``: the
        global norm as one copy of all gradients and one reduction (compiled, it took one kernel
        per parameter; the multi-tensor norm kernel took 14 us on an H100), then clipping + Adam
        compiled (:meth:`_scaled_step_eager`). Each gradient enters the copy as a view in its
        memory order (channels-last conv gradients would otherwise be copied twice). Returns the
        norm before clipping."""
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

    # ------------------------------------------------------------------------------------------
    # work beside the update (FastUpdater)

    @contextlib.contextmanager
    def overlapped_noise_reset(self):
        """Resample both networks' noise while the body runs (the replay sampling of the fast
        path): on a side stream, joined at exit, where there are side streams; else first. The
        noise buffers are read only after the join, and the fork waits for everything the
        current stream did before."""
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
        streams; else in order. The fork waits for everything the current stream did before; the
        caller joins with :meth:`join_beside` before anything reads what the body wrote. The
        body's inputs must stay referenced until then (no ``record_stream``)."""
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
