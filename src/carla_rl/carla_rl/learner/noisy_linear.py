"""Factorised Gaussian noisy linear layer (Fortunato et al. 2018, "Noisy Networks for Exploration").

``y = (mu_w + sigma_w * eps_w) x + (mu_b + sigma_b * eps_b)`` with factorised noise
``eps_w = f(eps_out) f(eps_in)^T``, ``eps_b = f(eps_out)``, ``f(x) = sign(x) sqrt(|x|)``.

The layer keeps only the two noise factors, already through ``f``: buffers ``eps_in`` [in] and
``eps_out`` [out]; ``eps_w`` is never stored, the weight is built from the factors where it is
used (compiled, inside the kernel that builds the weight). Noise is resampled *in place* by
:meth:`reset_noise`, so a captured CUDA graph that calls it draws fresh noise on every replay. In a
:class:`~carla_rl.learner.networks.QNetwork` the factors of all noisy layers are views of one
network-wide buffer, resampled by one kernel. The noise is used only when the layer is in
training mode *and* ``noise=True`` is passed; with either off the layer is the deterministic mean
network (evaluation). The noise buffers are not part of the layer's ``state_dict`` (a QNetwork
saves its network-wide buffer).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class NoisyLinear(nn.Module):
    def __init__(self, in_features: int, out_features: int, sigma0: float) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.sigma0 = sigma0
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features), persistent=False)    # f(eps_in)
        self.register_buffer("eps_out", torch.zeros(out_features), persistent=False)  # f(eps_out)
        self.reset_parameters()
        self.reset_noise()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.in_features)
        nn.init.uniform_(self.weight_mu, -bound, bound)
        nn.init.uniform_(self.bias_mu, -bound, bound)
        nn.init.constant_(self.weight_sigma, self.sigma0 / math.sqrt(self.in_features))
        nn.init.constant_(self.bias_sigma, self.sigma0 / math.sqrt(self.in_features))

    @staticmethod
    def scale_noise(x: torch.Tensor) -> torch.Tensor:
        """f(x) = sign(x) sqrt(|x|)."""
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Draw new factorised noise into the static buffers (in place, graph-capturable)."""
        self.eps_in.copy_(self.scale_noise(torch.randn_like(self.eps_in)))
        self.eps_out.copy_(self.scale_noise(torch.randn_like(self.eps_out)))

    def noisy_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu_w + sigma_w * f(eps_out) f(eps_in)^T [out, in], mu_b + sigma_b * f(eps_out) [out])
        with the current noise."""
        return (torch.addcmul(self.weight_mu, self.weight_sigma,
                              torch.outer(self.eps_out, self.eps_in)),
                torch.addcmul(self.bias_mu, self.bias_sigma, self.eps_out))

    def weights(self, noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(weight, bias) as :meth:`forward` uses them: noisy in training mode with ``noise``,
        else the means."""
        if noise and self.training:
            return self.noisy_weights()
        return self.weight_mu, self.bias_mu

    def forward(self, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
        return nn.functional.linear(x, *self.weights(noise))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"sigma0={self.sigma0}"
