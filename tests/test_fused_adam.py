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


@pytest.mark.parametrize("with_shadow", [False, True])
def test_a_row_sparse_gradient_steps_as_its_dense_gradient(with_shadow):
    """Rows without a gradient get the zero-gradient update (their moments decay, the parameter
    still moves): bit for bit the dense step of the same gradient, and torch's to rounding."""
    torch.manual_seed(4)
    start = torch.randn(50, 24)
    sparse_p, dense_p, torch_p = (torch.nn.Parameter(start.clone()) for _ in range(3))
    if with_shadow:
        sparse_p.bf16_shadow = torch.zeros(50, 24, dtype=torch.bfloat16)
    optimisers = [FusedAdam([sparse_p], lr=0.01), FusedAdam([dense_p], lr=0.01), torch.optim.Adam([torch_p], lr=0.01)]
    generator = torch.Generator().manual_seed(5)
    for step in range(6):
        rows = torch.randperm(50, generator=generator)[: 10 + step].sort().values
        grad = torch.sparse_coo_tensor(rows.unsqueeze(0), torch.randn(len(rows), 24, generator=generator), (50, 24),
                                       is_coalesced=True)
        sparse_p.grad, dense_p.grad, torch_p.grad = grad, grad.to_dense(), grad.to_dense()
        assert optimisers[0]._plain()
        for optimiser in optimisers:
            optimiser.step()
        assert torch.equal(sparse_p, dense_p)
        if with_shadow:
            assert torch.equal(sparse_p.bf16_shadow, sparse_p.detach().bfloat16())
    torch.testing.assert_close(sparse_p, torch_p, rtol=1e-6, atol=1e-7)
    assert not torch.equal(sparse_p, start)
    state, dense_state = optimisers[0].state[sparse_p], optimisers[1].state[dense_p]
    assert torch.equal(state["exp_avg"], dense_state["exp_avg"]) and torch.equal(state["exp_avg_sq"], dense_state["exp_avg_sq"])


def test_a_row_sparse_gradient_outside_the_fused_case_is_made_dense_for_torch():
    param = torch.nn.Parameter(torch.ones(6, 3))
    param.grad = torch.sparse_coo_tensor(torch.tensor([[1, 4]]), torch.ones(2, 3), (6, 3), is_coalesced=True)
    optimiser = FusedAdam([param], lr=0.1, weight_decay=0.01)  # weight decay: torch.optim.Adam's step
    assert not optimiser._plain()
    optimiser.step()
    assert not param.grad.is_sparse and torch.all(param[[1, 4]] < 1)
