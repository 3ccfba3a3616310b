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
    ptr = layer.weight_epsilon.data_ptr()
    layer.reset_noise()
    assert layer.weight_epsilon.data_ptr() == ptr


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
