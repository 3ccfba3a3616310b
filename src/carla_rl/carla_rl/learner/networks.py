"""Q-networks: conv encoder over stacked uint8 frames + MLP over vector features, and heads.

Heads combine three independent switches of :class:`AgentConfig`: dueling or not, noisy or
plain linear layers, C51 distribution over ``n_atoms`` or a scalar Q. Shapes in comments use
B = batch, S = frame stack, H/W = frame size, V = vector size, A = actions, N = atoms.
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn

from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
from carla_rl.learner.noisy_linear import NoisyLinear

PIXEL_SCALE = 255.0  # uint8 frames -> [0, 1], applied on the device


def dueling(value: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
    """Value [B, 1, N] + advantage [B, A, N] - the advantage's mean over actions -> [B, A, N]."""
    return value + adv - adv.mean(dim=1, keepdim=True)


def expected_q(logits: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """C51 logits [B, A, N] -> expected Q [B, A] over ``support`` [N]."""
    return (logits.float().softmax(dim=-1) * support).sum(-1)


def space_to_depth_applies(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` can run as a stride-1 conv over space-to-depth blocks (see
    :func:`space_to_depth`): square stride > 1 that divides the square kernel, no padding,
    dilation or groups."""
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    return (kh == kw and sh == sw and sh > 1 and kh % sh == 0 and conv.groups == 1
            and conv.padding in ((0, 0), "valid") and conv.dilation == (1, 1))


def space_to_depth(x: torch.Tensor, block: int, kernel: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C*block*block, H', W'] with channel ``c*block*block + p*block + q``
    holding pixel ``(block*i + p, block*j + q)`` of channel ``c``, cropped to the rows and
    columns that a ``kernel`` x ``kernel`` conv of stride ``block`` reads. The result is
    channels_last in memory (NHWC, what cuDNN wants); works on uint8 (cheap to permute)."""
    b, c, h, w = x.shape
    rows = (h - kernel) // block * block + kernel  # a multiple of block (kernel % block == 0)
    cols = (w - kernel) // block * block + kernel
    x = x[:, :, :rows, :cols].reshape(b, c, rows // block, block, cols // block, block)
    x = x.permute(0, 2, 4, 1, 3, 5)  # [B, H', W', C, p, q]
    x = x.reshape(b, rows // block, cols // block, c * block * block)  # copies once (NHWC)
    return x.permute(0, 3, 1, 2)  # [B, C*p*q, H', W'] logical, channels_last strides


def space_to_depth_weight(weight: torch.Tensor, block: int) -> torch.Tensor:
    """Conv weight [O, C, k, k] (stride ``block``) -> [O, C*block*block, k/block, k/block] for a
    stride-1 conv over :func:`space_to_depth` input: ``w2[o, c*b*b + p*b + q, a, e] =
    w[o, c, b*a + p, b*e + q]``. Differentiable (gradients flow to the original weight)."""
    o, c, kh, kw = weight.shape
    w = weight.reshape(o, c, kh // block, block, kw // block, block)  # [O, C, a, p, e, q]
    w = w.permute(0, 2, 4, 1, 3, 5)                                    # [O, a, e, C, p, q]
    w = w.reshape(o, kh // block, kw // block, c * block * block)
    return w.permute(0, 3, 1, 2)  # [O, C*p*q, a, e] logical, channels_last strides like the input


def conv_input(encoder: "Encoder", index: int, x: torch.Tensor,
               weights: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor], int | tuple]:
    """(input, weights, stride) of conv ``index`` of ``encoder``: the input as s x s blocks (NHWC)
    and the weights reshaped where the encoder runs that conv over blocks (stride 1), else as they
    are (channels-last frames at the first conv where asked); the first conv's uint8 pixels scaled
    to [0, 1] after that (blocks are cheaper to build in uint8). At the first conv, floating-point
    ``x`` is taken as :func:`first_conv_input`'s result (only the weights are reshaped)."""
    conv = encoder.convs[index]
    stride = conv.stride
    prepared = index == 0 and x.is_floating_point()
    if encoder.space_to_depth_layers[index]:
        block, kernel = conv.stride[0], conv.kernel_size[0]
        if not prepared:
            x = space_to_depth(x, block, kernel)                # [B, C*b*b, H', W']
        weights = [space_to_depth_weight(w, block) for w in weights]
        stride = 1
    elif index == 0 and encoder.channels_last and not prepared:
        x = x.contiguous(memory_format=torch.channels_last)  # uint8: 4x cheaper than cuDNN's float permute
    if index == 0 and not prepared:
        x = x.float() / PIXEL_SCALE
    return x, weights, stride


def first_conv_input(encoder: "Encoder", frames: torch.Tensor,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 frames [B, S, H, W] -> exactly what ``encoder``'s first conv reads (scaled to [0, 1];
    space-to-depth blocks and / or channels-last where the encoder uses them), as ``dtype`` (the
    conv's compute dtype: what autocast would cast it to). ``encoder`` and :func:`paired_outputs`
    accept the result in place of the frames, so that the conversion can run elsewhere (the fast
    path does it in the replay sampling, beside the previous update's backward pass)."""
    x, _, _ = conv_input(encoder, 0, frames, [])
    return x.to(dtype)


class Encoder(nn.Module):
    """Stacked frames [B, S, H, W] uint8 (or their :func:`first_conv_input`) and vectors [B, V]
    float32 -> features [B, F]."""

    def __init__(self, spec: ObservationSpec, config: AgentConfig) -> None:
        super().__init__()
        net = config.network
        layers: list[nn.Module] = []
        in_channels = spec.frame_stack
        for channels, kernel, stride in zip(net.conv_channels, net.conv_kernels,
                                            net.conv_strides):
            layers += [nn.Conv2d(in_channels, channels, kernel, stride), nn.ReLU()]
            in_channels = channels
        layers.append(nn.Flatten())
        # holds the conv weights (state_dict keys encoder.conv.N) and sizes the output; forward
        # runs each conv functionally on the input layout conv_input gives it
        self.conv = nn.Sequential(*layers)
        with torch.no_grad():  # output size by a dry run, never hard-coded
            dummy = torch.zeros(1, spec.frame_stack, spec.height, spec.width)
            try:
                conv_out = self.conv(dummy).shape[1]
            except RuntimeError as exc:
                raise ValueError(f"network: conv layers do not fit {spec.height}x{spec.width} "
                                 f"frames: {exc}") from None
        mlp: list[nn.Module] = []
        in_size = spec.vector_size
        if spec.vector_size > 0:
            for hidden in net.vector_hidden:
                mlp += [nn.Linear(in_size, hidden), nn.ReLU()]
                in_size = hidden
        self.mlp = nn.Sequential(*mlp)
        self.has_vector = spec.vector_size > 0
        self.out_size = conv_out + (in_size if self.has_vector else 0)
        self.convs = [m for m in self.conv if isinstance(m, nn.Conv2d)]
        self.channels_last = False  # see QNetwork.use_channels_last
        self.space_to_depth = False  # see QNetwork.use_space_to_depth
        self.space_to_depth_layers = [False] * len(self.convs)  # per conv

    def forward(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        x = frames
        for index, conv in enumerate(self.convs):  # conv_input: the layout of each conv's input
            x, (weight,), stride = conv_input(self, index, x, [conv.weight])
            x = torch.relu(nn.functional.conv2d(x, weight, conv.bias, stride))
        x = x.flatten(1)  # [B, C*h*w]
        if self.has_vector:
            x = torch.cat([x, self.mlp(vectors.float())], dim=1)  # [B, F]
        return x


class _Head(nn.Module):
    """Two layers (hidden + output), noisy or plain: [B, F] -> [B, out]."""

    def __init__(self, in_size: int, hidden: int, out_size: int, noisy: bool,
                 sigma0: float) -> None:
        super().__init__()
        self.noisy = noisy
        if noisy:
            self.fc1 = NoisyLinear(in_size, hidden, sigma0)
            self.fc2 = NoisyLinear(hidden, out_size, sigma0)
        else:
            self.fc1 = nn.Linear(in_size, hidden)
            self.fc2 = nn.Linear(hidden, out_size)

    def forward(self, x: torch.Tensor, noise: bool) -> torch.Tensor:
        if self.noisy:
            return self.fc2(torch.relu(self.fc1(x, noise)), noise)
        return self.fc2(torch.relu(self.fc1(x)))


class QNetwork(nn.Module):
    """Rainbow-style Q-network. ``forward`` returns C51 logits [B, A, N] or Q [B, A]."""

    def __init__(self, spec: ObservationSpec, action_size: int, config: AgentConfig) -> None:
        super().__init__()
        self.spec = spec
        self.action_size = action_size
        self.distributional = config.distributional
        self.dueling = config.dueling
        self.n_atoms = config.n_atoms if config.distributional else 1
        self.encoder = Encoder(spec, config)
        hidden = config.network.hidden_size
        f = self.encoder.out_size
        self.advantage = _Head(f, hidden, action_size * self.n_atoms, config.noisy,
                               config.noisy_sigma0)
        self.value = (_Head(f, hidden, self.n_atoms, config.noisy, config.noisy_sigma0)
                      if config.dueling else None)
        support = torch.linspace(config.v_min, config.v_max, config.n_atoms)
        self.register_buffer("support", support if config.distributional else torch.zeros(1))
        self._noisy_layers = [m for m in self.modules() if isinstance(m, NoisyLinear)]
        # One flat buffer for the noise factors of all noisy layers, each layer's eps_in / eps_out
        # a view of it: a network-wide resample is one kernel instead of one or two per layer
        # (matters in graphs: with a weight-sized noise buffer per layer, the resample of both
        # networks took ~47 us of the critical path of an update on an H100).
        sizes = [n for layer in self._noisy_layers
                 for n in (layer.in_features, layer.out_features)]
        self.register_buffer("noise_flat", torch.zeros(sum(sizes)))
        self._noise_slices = []
        offset = 0
        for layer in self._noisy_layers:
            sl_in = slice(offset, offset + layer.in_features)
            sl_out = slice(sl_in.stop, sl_in.stop + layer.out_features)
            offset = sl_out.stop
            self._noise_slices.append((sl_in, sl_out))
        self._bind_noise()
        self.reset_noise()

    def _bind_noise(self) -> None:
        """Make every noisy layer's ``eps_in`` / ``eps_out`` views of ``noise_flat``."""
        for layer, (sl_in, sl_out) in zip(self._noisy_layers, self._noise_slices):
            layer.eps_in = self.noise_flat[sl_in]
            layer.eps_out = self.noise_flat[sl_out]

    def _apply(self, fn, recurse: bool = True):
        # .to() / .cuda() / .float() move each buffer on its own, which would leave the layers'
        # noise views as separate copies: bind them to the moved network-wide buffer again.
        result = super()._apply(fn, recurse)
        self._bind_noise()
        return result

    def forward(self, frames: torch.Tensor, vectors: torch.Tensor,
                noise: bool = True) -> torch.Tensor:
        x = self.encoder(frames, vectors)  # [B, F]
        adv = self.advantage(x, noise).view(-1, self.action_size, self.n_atoms)  # [B, A, N]
        if self.value is not None:
            value = self.value(x, noise).view(-1, 1, self.n_atoms)  # [B, 1, N]
            out = dueling(value, adv)  # [B, A, N]
        else:
            out = adv
        if self.distributional:
            return out  # [B, A, N] logits
        return out.squeeze(-1)  # [B, A]

    def use_channels_last(self) -> "QNetwork":
        """NHWC conv weights and inputs (for CUDA): cuDNN's tensor-core kernels want NHWC, and
        with NCHW it converts every activation and gradient back and forth (profiled: a quarter
        of the GPU time of an update). Values and state_dict keys are unchanged."""
        self.encoder.channels_last = True
        return self.to(memory_format=torch.channels_last)

    def use_space_to_depth(self, later_convs: bool = False) -> "QNetwork":
        """Run the first conv (e.g. 8x8 stride 4 over 4 channels, which tensor cores handle
        poorly) as the equal 2x2 stride-1 conv over 4x4 space-to-depth blocks (64 channels);
        with ``later_convs`` every later conv whose stride divides its kernel too (e.g. 4x4
        stride 2 as 2x2 stride 1 over 2x2 blocks: its input gradient is then a plain cuDNN
        kernel). An exact re-parameterisation: the same weights, reshaped on the fly, so values
        (up to float rounding), state_dict keys and gradients are unchanged. No-op for convs
        whose stride does not divide their kernel. The weights of the convs over blocks are
        reshaped on every pass, so they are kept in plain (NCHW) memory order, which is the order
        their gradients come in (H100, compiled update): with channels-last weights autograd
        copied both gradients over (two kernels per update on the critical path)."""
        encoder = self.encoder
        encoder.space_to_depth_layers = [
            space_to_depth_applies(conv) and (index == 0 or later_convs)
            for index, conv in enumerate(encoder.convs)]
        encoder.space_to_depth = any(encoder.space_to_depth_layers)
        for conv, blocks in zip(encoder.convs, encoder.space_to_depth_layers):
            if blocks:
                conv.weight.data = conv.weight.data.contiguous()
        return self

    def q_from_output(self, out: torch.Tensor) -> torch.Tensor:
        """Expected Q [B, A] from ``forward``'s output."""
        if self.distributional:
            return expected_q(out, self.support)  # [B, A]
        return out.float()

    def q_values(self, frames: torch.Tensor, vectors: torch.Tensor,
                 noise: bool = True) -> torch.Tensor:
        return self.q_from_output(self(frames, vectors, noise))  # [B, A]

    @torch.no_grad()
    def reset_noise(self) -> None:
        """Resample the noise of every noisy layer, in place (graph-capturable): new factors
        f(eps) for all layers at once."""
        if not self._noisy_layers:
            return
        self.noise_flat.copy_(NoisyLinear.scale_noise(torch.randn_like(self.noise_flat)))


def architecture_fingerprint(network: nn.Module, spec: ObservationSpec,
                             action_size: int) -> str:
    """Hash of everything that makes weights interchangeable: names, shapes, dtypes, spec."""
    items = [(name, list(t.shape), str(t.dtype)) for name, t in network.state_dict().items()]
    desc = {"spec": [spec.frame_stack, spec.height, spec.width, spec.vector_size],
            "actions": action_size, "tensors": items, "class": type(network).__name__}
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:16]


def _layer_weights(layer: nn.Module, noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a plain or noisy linear layer as its ``forward(x, noise)`` uses them."""
    if isinstance(layer, NoisyLinear):
        if noise and layer.training:
            return layer.noisy_weights()
        return layer.weight_mu, layer.bias_mu
    return layer.weight, layer.bias


def paired_outputs(first: QNetwork, second: QNetwork, frames: torch.Tensor,
                   vectors: torch.Tensor, noise: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(first(frames, vectors, noise), second(frames, vectors, noise))`` for two networks of the
    same architecture, as one pass with their layers side by side: the first conv with both
    networks' filters (the input is shared), the later convs as 2-group convs, the linear layers
    as batched matrix products over the pair. Half the kernels of two passes, each twice as wide
    (on a GPU, small layers leave most SMs idle). Forward only; values equal the two passes up to
    float rounding (tested)."""
    functional = nn.functional
    encoders = first.encoder, second.encoder
    convs = [e.convs for e in encoders]
    cat = torch.cat
    x = frames
    for index, pair in enumerate(zip(*convs)):
        # space-to-depth blocks keep the group structure: group g's channels stay together
        x, weights, stride = conv_input(encoders[0], index, x, [m.weight for m in pair])
        # the first conv with both networks' filters (shared input), later ones as 2 groups
        x = functional.relu(functional.conv2d(x, cat(weights), cat([m.bias for m in pair]),
                                              stride, groups=1 if index == 0 else 2))
    batch = x.shape[0]
    features = x.reshape(batch, 2, -1).transpose(0, 1)                      # [2, B, C*h*w]
    if encoders[0].has_vector:
        mlps = [[m for m in e.mlp if isinstance(m, nn.Linear)] for e in encoders]
        h = vectors.float().expand(2, *vectors.shape)                       # [2, B, V]
        for pair in zip(*mlps):
            h = functional.relu(_paired_linear(h, [(m.weight, m.bias) for m in pair]))
        features = cat([features, h], dim=2)                                # [2, B, F]
    heads = [[net.advantage] + ([net.value] if net.value is not None else [])
             for net in (first, second)]
    fc1 = [[_layer_weights(h.fc1, noise) for h in pair] for pair in heads]  # per net, per head
    hidden = functional.relu(_paired_linear(
        features, [(cat([w for w, _ in net]), cat([b for _, b in net])) for net in fc1]))
    size = fc1[0][0][0].shape[0]                                            # hidden units
    adv = _paired_linear(hidden[..., :size], [_layer_weights(net[0].fc2, noise) for net in heads])
    value = _paired_linear(hidden[..., size:], [_layer_weights(net[1].fc2, noise)
                                                for net in heads]) \
        if first.value is not None else None                                # [2, B, N]
    outs = []
    for index, net in enumerate((first, second)):
        out = adv[index].view(batch, net.action_size, net.n_atoms)         # [B, A, N]
        if value is not None:
            out = dueling(value[index].view(batch, 1, net.n_atoms), out)
        outs.append(out if net.distributional else out.squeeze(-1))
    return outs[0], outs[1]


def _paired_linear(x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """x [G, B, in] through G linear layers (weight [out, in], bias [out]) -> [G, B, out]."""
    weight = torch.stack([w for w, _ in layers]).transpose(1, 2)           # [G, in, out]
    bias = torch.stack([b for _, b in layers])[:, None, :]                  # [G, 1, out]
    return torch.baddbmm(bias, x, weight)


def _linear_weights(layer: nn.Module, with_noise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of a plain or noisy linear layer as acting uses them: a noisy layer's
    ``mu + sigma * eps`` with its current noise, or its ``mu`` alone."""
    if isinstance(layer, NoisyLinear) and with_noise:
        return layer.noisy_weights()  # new tensors
    weight, bias = _layer_weights(layer, noise=False)
    return weight.clone(), bias.clone()


class FrozenQNetwork:
    """The Q-values of a :class:`QNetwork` at fixed weights, for acting: the same layers as plain
    tensors and functional calls, built once per weight sync.

    A batch-1 CPU act is dispatch-bound (a few MFLOP against ~40 module calls and torch ops); this
    drops the module machinery, runs the two heads' first layers (advantage and value) as one
    matrix product and folds the pixel scaling into the first conv's weights (one pass over the
    frames less: ~0.08 of ~3 ms per batch-16 act on the 2-core CPU). Values equal
    ``QNetwork.q_values`` up to float rounding (tested). Covers the plain and channels-last
    encoders; a space-to-depth encoder acts through the module itself."""

    def __init__(self, network: QNetwork, with_noise: bool) -> None:
        encoder = network.encoder
        if encoder.space_to_depth:
            raise ValueError("FrozenQNetwork: space-to-depth encoders act through QNetwork")
        with torch.no_grad():
            memory_format = torch.channels_last if encoder.channels_last else torch.contiguous_format
            self.convs = [(layer.weight.detach().clone().contiguous(memory_format=memory_format),
                           layer.bias.detach().clone(), layer.stride)
                          for layer in encoder.conv if isinstance(layer, nn.Conv2d)]
            first_weight, first_bias, first_stride = self.convs[0]  # pixels / 255 folded into the first conv
            self.convs[0] = (first_weight / PIXEL_SCALE, first_bias, first_stride)
            self.channels_last = encoder.channels_last
            self.mlp = [(layer.weight.detach().clone(), layer.bias.detach().clone())
                        for layer in encoder.mlp if isinstance(layer, nn.Linear)]
            self.has_vector = encoder.has_vector
            heads = [network.advantage] + ([network.value] if network.value is not None else [])
            first = [_linear_weights(head.fc1, with_noise) for head in heads]
            self.fc1 = (torch.cat([w for w, _ in first]), torch.cat([b for _, b in first]))  # [heads*H, F]
            self.fc2 = [_linear_weights(head.fc2, with_noise) for head in heads]
            self.hidden = first[0][0].shape[0]
        self.action_size = network.action_size
        self.n_atoms = network.n_atoms
        self.distributional = network.distributional
        self.support = network.support.detach().clone()

    def q_values(self, frames: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, S, H, W] and vectors [B, V] -> expected Q [B, A]."""
        functional = nn.functional
        if self.channels_last:
            frames = frames.contiguous(memory_format=torch.channels_last)
        x = frames.float()  # the first conv's weights carry the 1 / PIXEL_SCALE
        for weight, bias, stride in self.convs:
            x = functional.relu(functional.conv2d(x, weight, bias, stride))
        x = x.flatten(1)                                                   # [B, C*h*w]
        if self.has_vector:
            h = vectors.float()
            for weight, bias in self.mlp:
                h = functional.relu(functional.linear(h, weight, bias))
            x = torch.cat([x, h], dim=1)                                   # [B, F]
        hidden = functional.relu(functional.linear(x, *self.fc1))          # [B, heads*H]
        adv = functional.linear(hidden[:, :self.hidden], *self.fc2[0]).view(-1, self.action_size, self.n_atoms)
        if len(self.fc2) > 1:                                              # dueling
            value = functional.linear(hidden[:, self.hidden:], *self.fc2[1]).view(-1, 1, self.n_atoms)
            out = dueling(value, adv)                                      # [B, A, N]
        else:
            out = adv
        if self.distributional:
            return expected_q(out, self.support)                           # [B, A]
        return out.float().squeeze(-1)
