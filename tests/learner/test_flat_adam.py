"""FlatAdam (flat_optimizer): clipping + Adam over flat buffers, run eagerly on CPU (the
compiled, graph-captured step is checked on CUDA in test_cuda.py)."""

import io

import pytest
import torch

from carla_rl.learner.flat_adam import ALIGN_ELEMENTS, FlatAdam
from carla_rl.learner.networks import QNetwork

from helpers import TINY_SPEC, tiny_config


def _network(seed: int = 0) -> QNetwork:
    torch.manual_seed(seed)
    net = QNetwork(TINY_SPEC, 3, tiny_config())
    return net.to(memory_format=torch.channels_last)  # conv weights NHWC, as on the graph path


def _adam(net: QNetwork, lr: float = 1e-2) -> torch.optim.Adam:
    return torch.optim.Adam(net.parameters(), lr=lr, eps=1e-6)


def _set_grads(net: QNetwork, grads: list[torch.Tensor], like_params: bool = True) -> None:
    """Gradients in the parameters' layout (as autograd makes them), or all contiguous."""
    for p, g in zip(net.parameters(), grads):
        p.grad = g.clone().contiguous(memory_format=torch.channels_last) \
            if g.dim() == 4 and like_params else g.clone()


def _frames_vectors():
    gen = torch.Generator().manual_seed(3)
    frames = torch.randint(0, 256, (5, 2, 8, 8), generator=gen, dtype=torch.uint8)
    return frames, torch.rand(5, 3, generator=gen)


def test_parameters_become_views_of_one_buffer_with_their_layout_and_values():
    net, reference = _network(), _network()
    before = [p.detach().clone() for p in net.parameters()]
    strides = [p.stride() for p in net.parameters()]
    flat = FlatAdam(_adam(net), max_norm=10.0)
    assert flat.is_flat()
    assert any(p.dim() == 4 and not p.is_contiguous() for p in net.parameters())  # NHWC kept
    for p, old, stride, offset in zip(net.parameters(), before, strides, flat.offsets):
        assert p.stride() == stride and torch.equal(p, old)
        assert offset % ALIGN_ELEMENTS == 0
        assert p.untyped_storage().data_ptr() == flat.flat_params.untyped_storage().data_ptr()
    frames, vectors = _frames_vectors()
    torch.testing.assert_close(net(frames, vectors, noise=False),
                               reference(frames, vectors, noise=False), rtol=0, atol=0)
    # the gaps between parameters hold zeros, and the buffer holds every value once
    values = torch.cat([p.reshape(-1) for p in before])
    stored = flat.flat_params[flat.flat_params != 0]
    assert torch.equal(stored.sort().values, values[values != 0].sort().values)


@pytest.mark.parametrize("clip,grads_like_params", [(0.0, True), (0.5, True), (1e6, True),
                                                    (0.5, False)])
def test_steps_equal_clip_grad_norm_and_torch_adam(clip, grads_like_params):
    ours, theirs = _network(), _network()
    flat = FlatAdam(_adam(ours), max_norm=clip)
    optimizer = _adam(theirs)
    gen = torch.Generator().manual_seed(1)
    for step in range(4):
        scale = 10.0 if step == 1 else 0.01  # clipped on step 1 (clip 0.5)
        grads = [torch.randn(p.shape, generator=gen) * scale for p in theirs.parameters()]
        _set_grads(ours, grads, like_params=grads_like_params)
        _set_grads(theirs, grads)
        norm = flat.step()
        expected = torch.nn.utils.clip_grad_norm_(
            theirs.parameters(), clip if clip > 0 else float("inf"))
        optimizer.step()
        torch.testing.assert_close(norm, expected)
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)  # lr 1e-2: 1e-4 of a step
    for a, b in zip(ours.parameters(), theirs.parameters()):  # moments and counters too
        state_a, state_b = flat.optimizer.state[a], optimizer.state[b]
        torch.testing.assert_close(state_a["exp_avg"], state_b["exp_avg"], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(state_a["exp_avg_sq"], state_b["exp_avg_sq"],
                                   rtol=1e-5, atol=1e-10)
        assert float(state_a["step"]) == float(state_b["step"]) == 4.0


def test_optimizer_state_dict_round_trip_resumes_exactly_into_the_flat_buffers():
    """A save / load (weights_only, a fresh network and optimizer) continues bitwise like the
    run that was not interrupted; the loaded state lands in the flat buffers."""
    gen = torch.Generator().manual_seed(2)
    grads = [[torch.randn(p.shape, generator=gen) for p in _network().parameters()]
             for _ in range(6)]
    straight = _network()
    straight_flat = FlatAdam(_adam(straight), max_norm=1.0)
    for g in grads:
        _set_grads(straight, g)
        straight_flat.step()

    first = _network()
    first_flat = FlatAdam(_adam(first), max_norm=1.0)
    for g in grads[:3]:
        _set_grads(first, g)
        first_flat.step()
    buffer = io.BytesIO()
    torch.save({"net": first.state_dict(), "opt": first_flat.optimizer.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)

    resumed = _network(seed=7)  # other initial weights: everything must come from the file
    resumed_flat = FlatAdam(_adam(resumed), max_norm=1.0)
    resumed.load_state_dict(saved["net"])
    resumed_flat.optimizer.load_state_dict(saved["opt"])
    assert resumed_flat.is_flat()
    for index, p in enumerate(resumed.parameters()):
        state = resumed_flat.optimizer.state[p]
        base = resumed_flat.exp_avg.untyped_storage().data_ptr()
        assert state["exp_avg"].untyped_storage().data_ptr() == base
        assert float(resumed_flat.steps[index]) == 3.0
    for g in grads[3:]:
        _set_grads(resumed, g)
        resumed_flat.step()
    for a, b in zip(resumed.parameters(), straight.parameters()):
        assert torch.equal(a, b)


def test_load_brings_the_saved_learning_rate():
    net = _network()
    flat = FlatAdam(_adam(net, lr=1e-2), max_norm=1.0)
    other = _adam(_network(), lr=3e-4)
    state = other.state_dict()
    state["state"] = {}
    flat.optimizer.load_state_dict(state)
    assert flat._hyper["lr"] == pytest.approx(3e-4)


def test_unsupported_setups_are_refused_with_the_reason():
    net = _network()
    with pytest.raises(ValueError, match="weight_decay"):
        FlatAdam(torch.optim.Adam(net.parameters(), weight_decay=1e-4), max_norm=1.0)
    params = list(net.parameters())
    with pytest.raises(ValueError, match="one parameter group"):
        FlatAdam(torch.optim.Adam([{"params": params[:1]}, {"params": params[1:]}]), 1.0)
    with pytest.raises(ValueError, match="fp32"):
        FlatAdam(torch.optim.Adam(_network().double().parameters()), max_norm=1.0)


def test_a_step_refuses_missing_gradients_and_replaced_parameters():
    net = _network()
    flat = FlatAdam(_adam(net), max_norm=1.0)
    params = list(net.parameters())
    for p in params[1:]:
        p.grad = torch.zeros_like(p)
    with pytest.raises(RuntimeError, match=r"parameters \[0\].*no gradient"):
        flat.step()
    params[0].grad = torch.zeros_like(params[0])
    flat.step()
    params[0].data = params[0].data.clone()
    with pytest.raises(RuntimeError, match="no longer lives in the flat buffer"):
        flat.step()
