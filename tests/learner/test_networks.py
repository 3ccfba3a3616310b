import itertools

import pytest
import torch

from carla_rl.learner.agent_config import AgentConfig, ObservationSpec
from carla_rl.learner.networks import QNetwork, architecture_fingerprint
from carla_rl.learner.noisy_linear import NoisyLinear

from helpers import TINY_SPEC, tiny_config


@pytest.mark.parametrize("dueling,noisy,distributional",
                         list(itertools.product([False, True], repeat=3)))
def test_head_shapes(dueling, noisy, distributional):
    cfg = tiny_config(dueling=dueling, noisy=noisy, distributional=distributional)
    net = QNetwork(TINY_SPEC, 5, cfg)
    frames = torch.randint(0, 256, (7, 2, 8, 8), dtype=torch.uint8)
    vectors = torch.randn(7, 3)
    out = net(frames, vectors)
    assert out.shape == ((7, 5, cfg.n_atoms) if distributional else (7, 5))
    assert net.q_values(frames, vectors).shape == (7, 5)


def test_encoder_size_from_dry_run_for_both_presets():
    spec = ObservationSpec(4, 84, 84, 10)
    cpu = QNetwork(spec, 6, AgentConfig())
    nature = QNetwork(spec, 6, AgentConfig().with_network_preset("nature"))
    assert cpu.encoder.out_size == 4 * 4 * 32 + 64
    assert nature.encoder.out_size == 7 * 7 * 64 + 128
    assert architecture_fingerprint(cpu, spec, 6) != architecture_fingerprint(nature, spec, 6)
    with pytest.raises(ValueError, match="do not fit"):
        QNetwork(ObservationSpec(4, 8, 8, 0), 6, AgentConfig())


def test_noisy_layers_resample_and_eval_is_deterministic():
    torch.manual_seed(0)
    layer = NoisyLinear(8, 4, sigma0=0.5)
    x = torch.randn(3, 8)
    first = layer(x)
    assert torch.equal(first, layer(x))  # same noise until reset
    layer.reset_noise()
    assert not torch.allclose(first, layer(x))
    mean = layer(x, noise=False)
    layer.reset_noise()
    assert torch.equal(mean, layer(x, noise=False))
    layer.eval()
    assert torch.equal(mean, layer(x))
    # noise buffers are changed in place (static addresses for CUDA graphs)
    ptrs = layer.eps_in.data_ptr(), layer.eps_out.data_ptr()
    layer.reset_noise()
    assert (layer.eps_in.data_ptr(), layer.eps_out.data_ptr()) == ptrs
    # the factorised weight noise: f(eps_out) f(eps_in)^T, f(x) = sign(x) sqrt(|x|)
    weight, bias = layer.noisy_weights()
    torch.testing.assert_close(weight, layer.weight_mu + layer.weight_sigma
                               * layer.eps_out[:, None] * layer.eps_in[None, :])
    torch.testing.assert_close(bias, layer.bias_mu + layer.bias_sigma * layer.eps_out)
    raw = torch.tensor([-4.0, 0.0, 0.25])
    torch.testing.assert_close(NoisyLinear.scale_noise(raw), torch.tensor([-2.0, 0.0, 0.5]))


def test_network_noise_is_one_buffer_through_moves_copies_and_state_dicts():
    """Every noisy layer's factors are views of the network's noise_flat (one kernel resamples
    them all), also after .to(), use_channels_last() and deepcopy; state_dict holds noise_flat
    only, and loading it brings back the noisy outputs."""
    import copy

    torch.manual_seed(0)
    cfg = tiny_config(noisy=True, dueling=True)
    net = QNetwork(TINY_SPEC, 5, cfg)

    def bound(network: QNetwork) -> bool:
        base = network.noise_flat.untyped_storage().data_ptr()
        layers = network._noisy_layers
        return len(layers) == 4 and all(
            t.untyped_storage().data_ptr() == base for layer in layers
            for t in (layer.eps_in, layer.eps_out))

    assert bound(net)
    frames = torch.randint(0, 256, (3, 2, 8, 8), dtype=torch.uint8)
    vectors = torch.randn(3, 3)
    before = net(frames, vectors)
    net.reset_noise()
    after = net(frames, vectors)
    assert not torch.allclose(before, after)  # the layers see the network-wide resample
    for moved in (net.to(torch.float32), net.use_channels_last(), copy.deepcopy(net)):
        assert bound(moved)
    twin = copy.deepcopy(net)
    twin.reset_noise()
    assert not torch.equal(twin.noise_flat, net.noise_flat)  # the copy has its own noise
    keys = net.state_dict().keys()
    assert "noise_flat" in keys and not [k for k in keys if "eps" in k]
    other = QNetwork(TINY_SPEC, 5, cfg)
    other.load_state_dict(net.state_dict())
    assert bound(other)
    torch.testing.assert_close(other(frames, vectors), net(frames, vectors))


def test_channels_last_network_computes_the_same_values_and_keys():
    torch.manual_seed(0)
    spec = ObservationSpec(4, 84, 84, 5)
    plain = QNetwork(spec, 6, AgentConfig())
    nhwc = QNetwork(spec, 6, AgentConfig())
    nhwc.load_state_dict(plain.state_dict())
    nhwc.use_channels_last()
    assert nhwc.encoder.conv[0].weight.is_contiguous(memory_format=torch.channels_last)
    assert list(nhwc.state_dict()) == list(plain.state_dict())
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    vectors = torch.rand(3, 5)
    torch.testing.assert_close(nhwc(frames, vectors, noise=False),
                               plain(frames, vectors, noise=False), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("channels,kernel,stride,size", [(4, 8, 4, 84), (4, 8, 4, 86),
                                                         (3, 4, 2, 11), (2, 6, 3, 17)])
def test_space_to_depth_conv_equals_the_strided_conv(channels, kernel, stride, size):
    """An s x s stride conv whose stride divides its kernel == a stride-1 conv over s x s
    space-to-depth blocks with the same weights reshaped (cropping rows the conv never reads)."""
    from carla_rl.learner.networks import space_to_depth, space_to_depth_weight

    torch.manual_seed(0)
    x = torch.randint(0, 256, (3, channels, size, size + 1), dtype=torch.uint8)
    weight = torch.randn(5, channels, kernel, kernel, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    plain = torch.nn.functional.conv2d(x.double(), weight, bias, stride=stride)
    blocks = space_to_depth(x, stride, kernel)
    assert blocks.dtype == torch.uint8 and blocks.is_contiguous(memory_format=torch.channels_last)
    s2d = torch.nn.functional.conv2d(blocks.double(), space_to_depth_weight(weight, stride), bias)
    assert s2d.shape == plain.shape
    torch.testing.assert_close(s2d, plain, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("preset", ["cpu", "nature"])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("later_convs", [False, True])
def test_space_to_depth_network_has_the_same_values_gradients_and_keys(preset, channels_last,
                                                                        later_convs):
    torch.manual_seed(0)
    spec = ObservationSpec(4, 84, 84, 5)
    cfg = AgentConfig().with_network_preset(preset)
    plain = QNetwork(spec, 6, cfg)
    s2d = QNetwork(spec, 6, cfg)
    s2d.load_state_dict(plain.state_dict())
    if channels_last:
        s2d.use_channels_last()
    s2d.use_space_to_depth(later_convs=later_convs)
    # both presets: 8x8 stride 4, 4x4 stride 2 (blocks too with later_convs), 3x3 (never)
    assert s2d.encoder.space_to_depth_layers == [True, later_convs, False]
    assert s2d.encoder.space_to_depth
    assert list(s2d.state_dict()) == list(plain.state_dict())
    assert architecture_fingerprint(s2d, spec, 6) == architecture_fingerprint(plain, spec, 6)
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    vectors = torch.rand(3, 5)
    outs = []
    for net in (plain, s2d):
        net.zero_grad()
        out = net(frames, vectors, noise=True)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
        outs.append((out.detach(), [p.grad.clone() for p in net.parameters()]))
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(outs[1][1], outs[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_space_to_depth_is_a_no_op_where_the_stride_does_not_divide_the_kernel():
    net = QNetwork(TINY_SPEC, 5, tiny_config())  # 3x3 stride 2
    net.use_space_to_depth()
    assert not net.encoder.space_to_depth


def test_acting_copy_with_folded_noise_acts_like_the_noisy_network():
    """DQNPolicy.load_weights folds mu + sigma * eps into an acting copy: same Q-values with noise as
    the synced network computes per call, until the next sync; greedy (no noise) unchanged."""
    import numpy as np

    from carla_rl.learner.dqn_agent import DQNPolicy

    cfg = tiny_config(noisy=True, distributional=True)
    learner = QNetwork(TINY_SPEC, 5, cfg)
    learner.reset_noise()
    policy = DQNPolicy(QNetwork(TINY_SPEC, 5, cfg), cfg, torch.device("cpu"), np.random.default_rng(0))
    policy.load_weights(learner.state_dict())
    frames = np.random.default_rng(1).integers(0, 256, (6, 2, 8, 8), dtype=np.uint8)
    vectors = np.random.default_rng(2).standard_normal((6, 3)).astype(np.float32)
    with torch.no_grad():
        noisy = learner.q_values(torch.as_tensor(frames), torch.as_tensor(vectors), noise=True)
        greedy = learner.q_values(torch.as_tensor(frames), torch.as_tensor(vectors), noise=False)
    assert torch.allclose(policy.q_values(frames, vectors, noise=True), noisy, atol=1e-6)
    assert torch.allclose(policy.q_values(frames, vectors, noise=False), greedy, atol=1e-6)
    assert not torch.allclose(noisy, greedy)  # the noise matters, so the first check could fail
    learner.reset_noise()  # a new sync brings the new noise
    policy.load_weights(learner.state_dict())
    with torch.no_grad():
        renewed = learner.q_values(torch.as_tensor(frames), torch.as_tensor(vectors), noise=True)
    assert torch.allclose(policy.q_values(frames, vectors, noise=True), renewed, atol=1e-6)


@pytest.mark.parametrize("dueling,noisy,distributional",
                         list(itertools.product([False, True], repeat=3)))
@pytest.mark.parametrize("channels_last", [False, True])
def test_frozen_network_computes_the_q_values_of_the_network(dueling, noisy, distributional, channels_last):
    """FrozenQNetwork (the acting path) against QNetwork.q_values, with the noise and without, for
    every head combination and both encoder layouts."""
    from carla_rl.learner.networks import FrozenQNetwork

    cfg = tiny_config(dueling=dueling, noisy=noisy, distributional=distributional)
    torch.manual_seed(3)
    net = QNetwork(TINY_SPEC, 5, cfg)
    if channels_last:
        net.use_channels_last()
    net.reset_noise()
    frames = torch.randint(0, 256, (6, 2, 8, 8), dtype=torch.uint8)
    vectors = torch.randn(6, 3)
    with torch.no_grad():
        for noise in (True, False):
            expected = net.q_values(frames, vectors, noise=noise)
            got = FrozenQNetwork(net, with_noise=noise).q_values(frames, vectors)
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        if noisy:  # the noise changes the values, so the comparison above could fail
            assert not torch.allclose(net.q_values(frames, vectors, noise=True),
                                      net.q_values(frames, vectors, noise=False))


def test_frozen_network_is_refused_for_space_to_depth_encoders():
    from carla_rl.learner.networks import FrozenQNetwork

    spec = ObservationSpec(4, 84, 84, 3)
    net = QNetwork(spec, 6, AgentConfig()).use_space_to_depth()
    assert net.encoder.space_to_depth
    with pytest.raises(ValueError, match="space-to-depth"):
        FrozenQNetwork(net, with_noise=True)


def with_layout(net: QNetwork, layout: str) -> QNetwork:
    """``net`` set to one of the fast path's layouts (``plain`` leaves it as it is)."""
    if layout == "channels_last":
        net.use_channels_last()
    elif layout == "space_to_depth":
        net.use_space_to_depth()
    elif layout == "space_to_depth_later_convs":
        net.use_channels_last().use_space_to_depth(later_convs=True)
        assert net.encoder.space_to_depth_layers == [True, True, False]
    return net


@pytest.mark.parametrize("dueling, noisy, distributional",
                         [(True, True, True), (False, False, False), (True, False, False),
                          (False, True, True)])
@pytest.mark.parametrize("layout", ["plain", "channels_last", "space_to_depth",
                                    "space_to_depth_later_convs"])
def test_paired_outputs_equal_two_separate_passes(dueling, noisy, distributional, layout):
    """Two networks side by side in one pass (grouped convs, batched matmuls) give each one's
    own forward output, with and without noise, in training and evaluation mode."""
    from carla_rl.learner.networks import paired_outputs

    torch.manual_seed(0)
    spec = ObservationSpec(4, 84, 84, 5)
    cfg = AgentConfig()
    cfg.dueling, cfg.noisy, cfg.distributional = dueling, noisy, distributional
    nets = [with_layout(QNetwork(spec, 6, cfg), layout),  # different weights and noise
            with_layout(QNetwork(spec, 6, cfg), layout)]
    frames = torch.randint(0, 256, (5, 4, 84, 84), dtype=torch.uint8)
    vectors = torch.rand(5, 5)
    with torch.no_grad():
        for training in (True, False):
            for net in nets:
                net.train(training)
            for noise in (True, False):
                got = paired_outputs(nets[0], nets[1], frames, vectors, noise)
                for net, out in zip(nets, got):
                    expected = net(frames, vectors, noise)
                    assert out.shape == expected.shape
                    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
        assert not torch.allclose(got[0], got[1])  # really two networks


@pytest.mark.parametrize("layout", ["plain", "channels_last", "space_to_depth",
                                    "space_to_depth_later_convs"])
def test_first_conv_input_stands_in_for_the_frames(layout):
    """first_conv_input converts the frames as the encoder would; the network and the paired pass
    take it in place of the uint8 frames and compute the same values bitwise (the conversion only
    moves), and in bf16 it is exactly what autocast would hand the first conv."""
    from carla_rl.learner.networks import first_conv_input, paired_outputs

    torch.manual_seed(0)
    spec = ObservationSpec(4, 84, 84, 5)
    nets = [with_layout(QNetwork(spec, 6, AgentConfig()), layout),
            with_layout(QNetwork(spec, 6, AgentConfig()), layout)]
    encoder = nets[0].encoder
    frames = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    vectors = torch.rand(3, 5)
    prepared = first_conv_input(encoder, frames)
    assert prepared.dtype == torch.float32
    if encoder.space_to_depth_layers[0]:
        assert prepared.shape == (3, 4 * 4 * 4, 21, 21)  # 4x4 blocks of the 8x8 stride-4 conv
    else:
        assert prepared.shape == frames.shape
        torch.testing.assert_close(prepared, frames.float() / 255, rtol=0, atol=0)
    if layout != "plain":
        assert prepared.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert torch.equal(nets[0](prepared, vectors), nets[0](frames, vectors))
        for a, b in zip(paired_outputs(nets[0], nets[1], prepared, vectors),
                        paired_outputs(nets[0], nets[1], frames, vectors)):
            assert torch.equal(a, b)
    blocks = first_conv_input(encoder, frames, torch.bfloat16)
    assert blocks.dtype == torch.bfloat16 and blocks.stride() == prepared.stride()
    assert torch.equal(blocks, prepared.to(torch.bfloat16))


def test_space_to_depth_convs_keep_their_weights_in_plain_order():
    """The convs over blocks reshape their weights on every pass; their weights are kept in plain
    (NCHW) order, the order of the gradients the compiled update produces (no copy by autograd),
    other convs stay channels-last. Values and keys are unchanged."""
    torch.manual_seed(0)
    spec = ObservationSpec(4, 84, 84, 5)
    plain = QNetwork(spec, 6, AgentConfig())
    net = QNetwork(spec, 6, AgentConfig())
    net.load_state_dict(plain.state_dict())
    net.use_channels_last().use_space_to_depth(later_convs=True)
    convs = net.encoder.convs
    assert net.encoder.space_to_depth_layers == [True, True, False]
    for conv in convs[:2]:
        assert conv.weight.is_contiguous()
        assert not conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert convs[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(),
                                                 plain.state_dict().values()))
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    vectors = torch.rand(2, 5)
    torch.testing.assert_close(net(frames, vectors, noise=False),
                               plain(frames, vectors, noise=False), rtol=1e-4, atol=1e-5)
