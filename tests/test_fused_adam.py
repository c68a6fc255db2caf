"""The fused CPU Adam against torch.optim.Adam: same parameters and state after many steps."""

import copy

import pytest
import torch

from dgl_synergraph.training import fused_adam
from dgl_synergraph.training.fused_adam import FusedAdam

pytestmark = pytest.mark.skipif(not fused_adam.available(), reason="no C compiler for the fused kernel")


def _params(seed):
    torch.manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(300, 70)), torch.nn.Parameter(torch.randn(64)),
            torch.nn.Parameter(torch.randn(1))]


@pytest.mark.parametrize("lr, betas, eps", [(1e-3, (0.9, 0.999), 1e-8), (0.05, (0.5, 0.9), 1e-4)])
def test_fused_adam_matches_torch_adam(lr, betas, eps):
    plain, fused = _params(0), _params(0)
    reference = torch.optim.Adam(plain, lr=lr, betas=betas, eps=eps)
    optimiser = FusedAdam(fused, lr=lr, betas=betas, eps=eps)
    assert optimiser._plain() is True or fused[0].grad is None
    generator = torch.Generator().manual_seed(1)
    for step in range(25):
        for a, b in zip(plain, fused):
            grad = torch.randn(a.shape, generator=generator) * (10 ** (step % 3 - 1))
            a.grad, b.grad = grad.clone(), grad.clone()
        assert optimiser._plain()
        reference.step()
        optimiser.step()
    for a, b in zip(plain, fused):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)
        assert not torch.equal(a, _params(0)[0]) if a.shape == (300, 70) else True
    ref_state, state = reference.state_dict(), optimiser.state_dict()
    assert ref_state["param_groups"] == state["param_groups"]
    for index, ref in ref_state["state"].items():
        assert float(state["state"][index]["step"]) == float(ref["step"]) == 25
        # gradients reach 10 here, so float32 rounding differences (ATen's lerp uses FMA) are ~1e-6
        torch.testing.assert_close(state["state"][index]["exp_avg"], ref["exp_avg"], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state["state"][index]["exp_avg_sq"], ref["exp_avg_sq"], rtol=1e-5, atol=1e-6)


def test_state_dicts_move_between_the_two():
    """A checkpoint written with torch's Adam resumes under FusedAdam and vice versa."""
    plain, fused = _params(2), _params(2)
    reference = torch.optim.Adam(plain, lr=0.01)
    for p in plain:
        p.grad = torch.ones_like(p)
    reference.step()
    optimiser = FusedAdam(fused, lr=0.01)
    with torch.no_grad():
        for a, b in zip(plain, fused):
            b.copy_(a)
    optimiser.load_state_dict(copy.deepcopy(reference.state_dict()))  # as through a checkpoint file
    for a, b in zip(plain, fused):
        a.grad = torch.full_like(a, -0.5)
        b.grad = a.grad.clone()
    reference.step()
    optimiser.step()
    for a, b in zip(plain, fused):
        torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)


def test_unsupported_settings_fall_back_to_torch():
    params = _params(3)
    for p in params:
        p.grad = torch.ones_like(p)
    assert not FusedAdam(params, lr=0.01, weight_decay=0.1)._plain()
    assert not FusedAdam(params, lr=0.01, amsgrad=True)._plain()
    half = [torch.nn.Parameter(torch.ones(4, dtype=torch.float64))]
    half[0].grad = torch.ones(4, dtype=torch.float64)
    assert not FusedAdam(half, lr=0.01)._plain()
    FusedAdam(half, lr=0.01).step()  # delegated to torch.optim.Adam
    assert torch.all(half[0] < 1)


def test_the_bf16_shadow_is_the_new_parameter_cast_as_torch_casts():
    param = torch.nn.Parameter(torch.randn(257, 33) * 3)
    param.bf16_shadow = torch.zeros(257, 33, dtype=torch.bfloat16)
    param.data[0, :3] = torch.tensor([float("nan"), float("inf"), 1.0 + 2 ** -8])  # NaN, inf, a tie
    optimiser = FusedAdam([param], lr=0.01)
    for _ in range(3):
        param.grad = torch.randn(257, 33)
        optimiser.step()
        assert torch.equal(param.bf16_shadow[1:], param.detach()[1:].bfloat16())
        assert torch.isnan(param.bf16_shadow[0, 0]) and torch.equal(param.bf16_shadow[0, 1:], param.detach()[0, 1:].bfloat16())
