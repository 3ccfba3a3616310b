"""Gradient clipping + Adam over parameters that live in one flat buffer (the CUDA-graph path).

:class:`FlatAdam` moves a ``torch.optim.Adam``'s parameters, and the moments it keeps for them,
into one flat fp32 buffer each: every parameter becomes a view of its stretch of the buffer, with
its own strides (channels-last convolution weights stay channels-last). One update step is then
a copy of the gradients into a flat gradient buffer (one cat kernel) and, compiled, the
global norm plus clipping plus Adam over whole buffers (about three kernels) — instead of one
kernel per parameter or per group of parameters, which on an H100 made clipping + Adam cost
~85 us of the ~420 us of an update (2026-11-27, commit ad7bac5).

The math is ``clip_grad_norm_`` followed by ``torch.optim.Adam``'s capturable step (step counters
on the device, no host syncs). The optimizer stays the owner of the state: ``state_dict`` and
``load_state_dict`` work as before (a load copies the loaded state into the flat buffers)."""

from __future__ import annotations

from collections.abc import Callable

import torch

ALIGN_ELEMENTS = 16  # each parameter starts 64 bytes into a fresh line: compiled kernels want aligned inputs


def _aligned(count: int) -> int:
    return -(-count // ALIGN_ELEMENTS) * ALIGN_ELEMENTS


def _in_memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` with its dimensions permuted from the largest stride to the smallest (a view)."""
    return tensor.permute(sorted(range(tensor.dim()), key=lambda d: -tensor.stride(d)))


def _is_dense(tensor: torch.Tensor) -> bool:
    """True if ``tensor`` fills its memory without gaps or overlaps in some dimension order
    (contiguous, channels-last, ...)."""
    return _in_memory_order(tensor).is_contiguous()


def flat_in_memory_order(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``'s elements as a 1-D tensor in the order they lie in memory: a view for any dense
    layout (e.g. channels-last), a copy otherwise. For order-free reductions such as a norm."""
    if tensor.is_contiguous():
        return tensor.view(-1)
    return _in_memory_order(tensor).reshape(-1)


def _dense_view(flat: torch.Tensor, like: torch.Tensor, offset: int) -> torch.Tensor:
    """A view of ``flat[offset:offset + like.numel()]`` with ``like``'s shape and strides."""
    return torch.as_strided(flat, like.shape, like.stride(), offset)


def flat_adam_step(params: torch.Tensor, grads: torch.Tensor, exp_avg: torch.Tensor,
                   exp_avg_sq: torch.Tensor, steps: torch.Tensor, *, lr: float, beta1: float,
                   beta2: float, eps: float, max_norm: float) -> torch.Tensor:
    """Clip ``grads`` to the global norm ``max_norm`` (as ``clip_grad_norm_``: scale by
    min(1, max_norm / (norm + 1e-6))), then one Adam step on the flat buffers, in place; every
    entry of ``steps`` (the per-parameter step counters) counts the step. Returns the norm
    before clipping."""
    norm = torch.linalg.vector_norm(grads)
    scaled = grads * (max_norm / (norm + 1e-6)).clamp(max=1.0)
    steps.add_(1)
    step = steps[0]
    exp_avg.lerp_(scaled, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(scaled, scaled, value=1 - beta2)
    bias_correction1 = 1 - torch.pow(beta1, step)
    bias_correction2_sqrt = (1 - torch.pow(beta2, step)).sqrt()
    denom = exp_avg_sq.sqrt() / bias_correction2_sqrt + eps
    params.sub_(exp_avg / denom * (lr / bias_correction1))
    return norm


class FlatAdam:
    """Clipping + Adam for ``optimizer``'s parameters laid out in flat buffers (see the module
    docstring); ``max_norm`` 0 means no clipping. With ``compile`` the step is
    ``torch.compile``-d (with inductor ``options``)."""

    def __init__(self, optimizer: torch.optim.Adam, max_norm: float, compile: bool = False,
                 options: dict | None = None) -> None:
        if len(optimizer.param_groups) != 1:
            raise ValueError("FlatAdam: one parameter group expected, got "
                             f"{len(optimizer.param_groups)}")
        group = optimizer.param_groups[0]
        unsupported = {k: group.get(k) for k in ("weight_decay", "amsgrad", "maximize")
                       if group.get(k)}
        if unsupported:
            raise ValueError(f"FlatAdam: Adam options not supported: {unsupported}")
        self.optimizer = optimizer
        self.params: list[torch.nn.Parameter] = list(group["params"])
        if not self.params:
            raise ValueError("FlatAdam: the optimizer has no parameters")
        device = self.params[0].device
        for p in self.params:
            if p.dtype != torch.float32 or p.device != device:
                raise ValueError(f"FlatAdam: fp32 parameters on one device expected, got "
                                 f"{p.dtype} on {p.device}")
            if not _is_dense(p):
                raise ValueError("FlatAdam: parameters must be dense (contiguous in some "
                                 f"dimension order); got strides {p.stride()}")
        self.offsets: list[int] = []
        total = 0
        for p in self.params:
            self.offsets.append(total)
            total += _aligned(p.numel())
        zeros = dict(dtype=torch.float32, device=device)
        self.flat_params = torch.zeros(total, **zeros)
        self.flat_grads = torch.zeros(total, **zeros)
        self.exp_avg = torch.zeros(total, **zeros)
        self.exp_avg_sq = torch.zeros(total, **zeros)
        self.steps = torch.zeros(len(self.params), **zeros)  # Adam's per-parameter counters
        with torch.no_grad():
            for p, offset in zip(self.params, self.offsets):
                view = _dense_view(self.flat_params, p, offset)
                view.copy_(p)
                p.data = view
        # the gradient copy is one cat into the flat buffer: each gradient in memory order, then
        # zeros up to the next parameter (one kernel; a multi-tensor copy into views took
        # 9.4 us on an H100, the cat of the unpadded gradients 5.3)
        gaps = [_aligned(p.numel()) - p.numel() for p in self.params]
        zeros_for_gaps = torch.zeros(max(gaps), **zeros)
        self._gaps = [zeros_for_gaps[:gap] if gap else None for gap in gaps]
        self.max_norm = float(max_norm) if max_norm > 0 else float("inf")
        self._hyper: dict[str, float] = {}
        self._step: Callable[..., torch.Tensor] = \
            torch.compile(flat_adam_step, options=options) if compile else flat_adam_step
        self.link_state()
        optimizer.register_load_state_dict_post_hook(lambda _optimizer: self.link_state())

    def link_state(self) -> None:
        """Copy the optimizer's state (if any: after a load) into the flat buffers, make the
        optimizer's state entries views of them again and take its hyperparameters (a load
        brings the saved ones, as for ``torch.optim.Adam``)."""
        group = self.optimizer.param_groups[0]
        self._hyper = dict(lr=float(group["lr"]), beta1=float(group["betas"][0]),
                           beta2=float(group["betas"][1]), eps=float(group["eps"]),
                           max_norm=self.max_norm)
        state = self.optimizer.state
        with torch.no_grad():
            for index, (p, offset) in enumerate(zip(self.params, self.offsets)):
                old = state.get(p, {})
                exp_avg = _dense_view(self.exp_avg, p, offset)
                exp_avg_sq = _dense_view(self.exp_avg_sq, p, offset)
                step = self.steps[index]
                for name, view in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq),
                                   ("step", step)):
                    if name in old and old[name] is not view:
                        view.copy_(old[name])
                    elif name not in old:
                        view.zero_()
                state[p] = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def is_flat(self) -> bool:
        """True while every parameter is still a view of the flat buffer (False after e.g.
        ``module.to(...)`` or ``load_state_dict(..., assign=True)`` replaced one)."""
        base = self.flat_params.untyped_storage().data_ptr()
        return all(p.untyped_storage().data_ptr() == base for p in self.params)

    def step(self) -> torch.Tensor:
        """Clip the gradients to the global norm and take one Adam step; returns the norm
        before clipping. Every parameter needs a gradient (``torch.optim.Adam`` would skip one
        without, a step over whole buffers cannot)."""
        if not self.is_flat():
            raise RuntimeError("FlatAdam: a parameter no longer lives in the flat buffer "
                               "(replaced by .to(), .data = or load_state_dict(assign=True))")
        grads = [p.grad for p in self.params]
        missing = [i for i, g in enumerate(grads) if g is None]
        if missing:
            shapes = [tuple(self.params[i].shape) for i in missing]
            raise RuntimeError(f"FlatAdam: parameters {missing} (shapes {shapes}) have no "
                               "gradient; every parameter must take part in the loss")
        pieces = []
        for p, grad, gap in zip(self.params, grads, self._gaps):
            if grad.stride() != p.stride():  # not in the parameter's memory order (unusual)
                grad = torch.empty_like(p).copy_(grad)
            pieces.append(flat_in_memory_order(grad))
            if gap is not None:
                pieces.append(gap)
        torch.cat(pieces, out=self.flat_grads)
        return self._step(self.flat_params, self.flat_grads, self.exp_avg, self.exp_avg_sq,
                          self.steps, **self._hyper)
