"""The Rainbow-DQN update, as plain as it can be: the reference implementation.

One update, top to bottom (``DQNAgent.update`` drives it):

1. sample a batch from the prioritized replay (``ReplayBuffer.sample``: n-step returns,
   discounts, importance weights) and copy it to the device (:func:`to_batch`),
2. :meth:`DQNAlgorithm.step`:
   a. resample the noisy layers' noise,
   b. :meth:`DQNAlgorithm.forward_passes`: the online network over the states, and over the
      next states the online network (selection, double DQN) and the target network,
   c. :meth:`DQNAlgorithm.loss_terms`: the next action by double-DQN selection among the
      allowed actions, the target distribution ``r + discount * z`` projected onto the C51
      support (:func:`categorical_projection`; or the scalar target), the cross-entropy (or
      Huber) loss weighted by the PER importance weights, and the new priorities,
   d. :meth:`DQNAlgorithm.apply_gradients`: backward pass, global gradient-norm clipping, Adam,
3. write the priorities back to the replay,
4. :meth:`DQNAlgorithm.update_target`: hard copy every ``target_update_interval`` updates, or
   Polyak averaging.

Nothing here depends on the device: no mixed precision, no compiled code, no CUDA graphs or
streams. The fast path (:mod:`carla_rl.learner.fast_algorithm`,
:mod:`carla_rl.learner.fast_update`) computes the same update with those, on CUDA, where the
config selects it; ``tests/learner/test_fast_path_equivalence.py`` checks that both give the same
loss, gradients, parameters and priorities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from carla_rl.learner.agent_config import AgentConfig
from carla_rl.learner.networks import QNetwork
from carla_rl.learner.replay_buffer import ReplaySample


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
    returns: torch.Tensor      # [B] float32, n-step return sum_k gamma^k r_k
    next_frames: torch.Tensor  # [B, S, H, W] uint8, like frames: the observation to bootstrap from
    next_vectors: torch.Tensor  # [B, V] float32
    discounts: torch.Tensor    # [B] float32, gamma^n, or 0 after a termination
    weights: torch.Tensor      # [B] float32 PER importance weights (1 when uniform)
    next_masks: torch.Tensor   # [B] int64 bitmask of allowed actions at the bootstrap obs


def to_batch(sample: ReplaySample, device: torch.device) -> Batch:
    """Copy a host replay sample to ``device`` (through pinned memory when that is a GPU)."""
    pin = device.type == "cuda"

    def move(x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(x))
        return (t.pin_memory() if pin else t).to(device, non_blocking=pin)

    return Batch(move(sample.frames), move(sample.vectors), move(sample.actions),
                 move(sample.returns), move(sample.next_frames), move(sample.next_vectors),
                 move(sample.discounts), move(sample.weights), move(sample.next_masks))


def mask_from_bits(bits: torch.Tensor, num_actions: int) -> torch.Tensor:
    """int64 bitmasks [B] -> bool [B, A] (static shapes, graph-safe)."""
    shifts = torch.arange(num_actions, device=bits.device)                     # [A]
    return ((bits[:, None] >> shifts) & 1).bool()                               # [B, A]


def categorical_projection(next_probs: torch.Tensor, returns: torch.Tensor,
                           discounts: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """Project the distribution r + discount * z (probabilities ``next_probs`` [B, N] on
    ``support`` [N]) back onto ``support``; returns [B, N]. Static shapes, no host syncs.

    A source atom's mass goes to the atoms on either side of its shifted position ``b`` (in
    atom units): atom j gets ``max(0, 1 - |b - j|)`` of it, all of it when ``b`` is an atom.
    Computed as a dense [B, N, N] weighting summed over the source atoms rather than as
    scatter-adds: one fused reduction kernel when compiled, with no atomics, so the sums come
    out the same in every run on a GPU too."""
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


class DQNAlgorithm:
    """The update of the online ``network`` against its ``target``: loss, Adam, target network.

    Read top to bottom: :meth:`step` (one gradient step) -> :meth:`forward_passes` ->
    :meth:`loss_terms` -> :meth:`apply_gradients`, then :meth:`update_target`."""

    def __init__(self, network: QNetwork, target: QNetwork, config: AgentConfig) -> None:
        self.network = network
        self.target = target
        self.config = config
        self.optimizer = torch.optim.Adam(network.parameters(), lr=config.lr, eps=config.adam_eps)
        self.target.load_state_dict(self.network.state_dict())
        self.target.requires_grad_(False)

    def step(self, batch: Batch) -> tuple[torch.Tensor, ...]:
        """One gradient step on ``batch``. Returns device tensors (loss, priorities [B], |td| [B],
        Q of the taken actions [B], gradient norm before clipping)."""
        self.reset_noise()
        loss, priorities, td_abs, q_taken = self.loss(batch)
        grad_norm = self.apply_gradients(loss)
        return loss.detach(), priorities, td_abs, q_taken, grad_norm

    def loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                          torch.Tensor]:
        """(loss [], priorities [B], |td| [B], Q of taken actions [B]); no host syncs."""
        out, next_select, next_target = self.forward_passes(batch)
        return self.loss_terms(batch, out, next_select, next_target)

    def forward_passes(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(online output for the states [B, A, N] or [B, A], with grad; Q-values [B, A] that
        select the next action; target output for the next states, no grad)."""
        out = self.network(batch.frames, batch.vectors)
        with torch.no_grad():
            next_target = self.target(batch.next_frames, batch.next_vectors)
            if self.config.double:  # double DQN: the online network selects, the target evaluates
                next_select = self.network.q_values(batch.next_frames, batch.next_vectors)
            else:
                next_select = self.target.q_from_output(next_target)
        return out, next_select, next_target

    def loss_terms(self, batch: Batch, out: torch.Tensor, next_select: torch.Tensor,
                   next_target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The loss of :meth:`loss` from the outputs of :meth:`forward_passes`."""
        cfg = self.config
        arange = torch.arange(batch.actions.shape[0], device=batch.actions.device)  # [B]
        # the next action: the selection's argmax among the actions allowed at the next state
        allowed = mask_from_bits(batch.next_masks, next_select.shape[1])  # [B, A]
        next_actions = next_select.masked_fill(~allowed, float("-inf")).argmax(dim=1)  # [B]
        if cfg.distributional:
            support = self.network.support  # [N]
            with torch.no_grad():
                # target distribution: the next action's distribution (the chosen row first,
                # then its softmax: B rows, not B * A), shifted by the n-step return and
                # discount, projected onto the support
                next_probs = next_target[arange, next_actions].float().softmax(-1)  # [B, N]
                target_probs = categorical_projection(next_probs, batch.returns,
                                                      batch.discounts, support)   # [B, N]
            log_probs = out[arange, batch.actions].float().log_softmax(-1)      # [B, N]
            per_sample = -(target_probs * log_probs).sum(-1)                   # [B] cross-entropy
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
        loss = (batch.weights * per_sample).mean()  # PER: importance-weighted mean
        return loss, priorities, td.abs(), q_taken

    def apply_gradients(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward pass of ``loss``, global gradient-norm clipping and one Adam step; returns
        the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        max_norm = self.config.grad_clip_norm if self.config.grad_clip_norm > 0 else float("inf")
        grad_norm = nn.utils.clip_grad_norm_(self.network.parameters(), max_norm)
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

    def reset_noise(self) -> None:
        """Resample the noisy layers' noise of both networks."""
        self.network.reset_noise()
        self.target.reset_noise()
