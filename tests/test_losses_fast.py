"""The fused in-batch cross-entropy behind info_nce against the plain formula it replaces."""

import pytest
import torch
import torch.nn.functional as F

from dgl_synergraph.losses import _InBatchCrossEntropy, anchor_info_nce, info_nce


def _plain(a, p):
    return F.cross_entropy(a @ p.t(), torch.arange(len(a)))


def test_value_and_gradients_equal_cross_entropy():
    generator = torch.Generator().manual_seed(0)
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 1e-5)):
        a0 = torch.randn(97, 16, generator=generator, dtype=dtype) * 3  # large logits: the max shift matters
        p0 = torch.randn(97, 16, generator=generator, dtype=dtype)
        grads = []
        for fn in (_plain, _InBatchCrossEntropy.apply):
            a, p = a0.clone().requires_grad_(), p0.clone().requires_grad_()
            loss = fn(a, p)
            (loss * 2.5).backward()  # a non-unit upstream gradient
            grads.append((loss.detach(), a.grad, p.grad))
        for plain, fused in zip(*grads):
            torch.testing.assert_close(fused, plain, rtol=tol, atol=tol)


def test_a_second_backward_through_the_reused_buffer_is_refused():
    a = torch.randn(5, 3, requires_grad=True)
    p = torch.randn(5, 3, requires_grad=True)
    loss = _InBatchCrossEntropy.apply(a, p)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_info_nce_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    cos = torch.tensor([[2 ** -0.5, 0.0], [2 ** -0.5, 1.0]]) / 0.5
    expected = -(torch.log_softmax(cos, dim=1).diagonal()).mean()
    assert torch.isclose(info_nce(a, p, 0.5), expected)


def test_a_positive_whose_probability_underflows_still_gets_its_exact_loss():
    # logit gaps of ~200: softmax's diagonal underflows to 0 in float32, the loss must not be inf
    a0 = torch.tensor([[10.0, 0.0], [0.0, 10.0], [7.0, 7.0]])
    p0 = torch.tensor([[-10.0, 0.0], [0.0, 10.0], [10.0, 0.0]])
    grads = []
    for fn in (_plain, _InBatchCrossEntropy.apply):
        a, p = a0.clone().requires_grad_(), p0.clone().requires_grad_()
        loss = fn(a, p)
        loss.backward()
        grads.append((loss.detach(), a.grad, p.grad))
    assert torch.isfinite(grads[1][0])
    for plain, fused in zip(*grads):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


def test_a_detached_side_gets_no_gradient_and_the_other_the_plain_one():
    generator = torch.Generator().manual_seed(1)
    a0, p0 = torch.randn(33, 8, generator=generator), torch.randn(33, 8, generator=generator)
    p_plain = p0.clone().requires_grad_()
    _plain(a0, p_plain).backward()
    a, p = a0.clone(), p0.clone().requires_grad_()
    _InBatchCrossEntropy.apply(a, p).backward()
    assert a.grad is None
    torch.testing.assert_close(p.grad, p_plain.grad, rtol=1e-5, atol=1e-6)


def test_bfloat16_products_stay_close_to_float32_and_return_float32_gradients():
    """precision=bf16 multiplies the [B, B] products in bfloat16 (8-bit mantissa): the loss within
    1% and each gradient within cosine 0.999 of the float32 one, every output float32. A product
    left in float32 would make them equal; a gradient from the wrong product would fail."""
    generator = torch.Generator().manual_seed(2)
    a0, p0 = torch.randn(256, 64, generator=generator), torch.randn(256, 64, generator=generator)
    results = {}
    for dtype in (None, torch.bfloat16):
        a, p = a0.clone().requires_grad_(), p0.clone().requires_grad_()
        loss = info_nce(a, p, 0.2, dtype)
        loss.backward()
        results[dtype] = (loss.detach(), a.grad, p.grad)
    (loss32, ga32, gp32), (loss16, ga16, gp16) = results[None], results[torch.bfloat16]
    assert loss16.dtype == ga16.dtype == gp16.dtype == torch.float32
    assert float(loss16) == pytest.approx(float(loss32), rel=1e-2) and not torch.equal(loss16, loss32)
    for fast, exact in ((ga16, ga32), (gp16, gp32)):
        assert F.cosine_similarity(fast.flatten(), exact.flatten(), dim=0) > 0.999


def _rows_against_gathered(loss_fn, n_rows=40, batch=300, dim=8, dtype=torch.float64, seed=3, scale=1.0):
    """loss_fn(a_table, p_table, rows) with ``rows`` given vs the same rows gathered first: value
    and gradients on the whole tables. ``batch`` draws from ``n_rows`` rows, so most repeat."""
    generator = torch.Generator().manual_seed(seed)
    a0 = torch.randn(n_rows, dim, generator=generator, dtype=dtype) * scale
    p0 = torch.randn(n_rows, dim, generator=generator, dtype=dtype)
    rows = torch.randint(0, n_rows, (batch,), generator=generator)
    assert len(torch.unique(rows)) < batch  # repeats present
    results = []
    for gathered in (True, False):
        a, p = a0.clone().requires_grad_(), p0.clone().requires_grad_()
        loss = loss_fn(a[rows], p[rows], None) if gathered else loss_fn(a, p, rows)
        (loss * 1.7).backward()
        results.append((loss.detach(), a.grad, p.grad))
    return results


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_info_nce_over_distinct_rows_equals_the_batch_with_its_repeats(dtype, tol):
    plain, distinct = _rows_against_gathered(lambda a, p, rows: info_nce(a, p, 0.2, rows=rows), dtype=dtype)
    for expected, got in zip(plain, distinct):
        torch.testing.assert_close(got, expected, rtol=tol, atol=tol)
    # a count that were ignored (every distinct row once) gives another value: the check can fail
    generator = torch.Generator().manual_seed(3)
    a0 = torch.randn(40, 8, generator=generator, dtype=dtype)
    p0 = torch.randn(40, 8, generator=generator, dtype=dtype)
    rows = torch.randint(0, 40, (300,), generator=generator)
    once = torch.unique(rows)
    assert not torch.isclose(info_nce(a0, p0, 0.2, rows=rows), info_nce(a0[once], p0[once], 0.2))


def test_info_nce_over_distinct_rows_when_a_positive_underflows():
    # temperature 0.005 on unit vectors: logit gaps of hundreds, the softmax diagonal underflows
    plain, distinct = _rows_against_gathered(lambda a, p, rows: info_nce(a, p, 0.005, rows=rows),
                                             dtype=torch.float32, n_rows=12, batch=50)
    assert torch.isfinite(distinct[0])
    for expected, got in zip(plain, distinct):
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("multi_positive", [False, True])
def test_anchor_info_nce_over_distinct_rows_equals_the_gathered_batch(multi_positive):
    def loss(a, p, rows):
        return anchor_info_nce(a, [p, 2 * p], 0.3, multi_positive, rows=rows)

    plain, distinct = _rows_against_gathered(loss)
    assert plain[1] is None and distinct[1] is None  # the anchor is a stop-gradient either way
    torch.testing.assert_close(distinct[0], plain[0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(distinct[2], plain[2], rtol=1e-12, atol=1e-12)


def test_bfloat16_products_over_distinct_rows_stay_close_to_the_float32_batch():
    plain, distinct = _rows_against_gathered(lambda a, p, rows: info_nce(a, p, 0.2, torch.bfloat16, rows=rows),
                                             dtype=torch.float32, dim=64, n_rows=400, batch=600)
    exact = _rows_against_gathered(lambda a, p, rows: info_nce(a, p, 0.2, rows=rows), dtype=torch.float32,
                                   dim=64, n_rows=400, batch=600)[0]
    assert float(distinct[0]) == pytest.approx(float(exact[0]), rel=1e-2)
    for fast, reference in zip(distinct[1:], exact[1:]):
        assert F.cosine_similarity(fast.flatten(), reference.flatten(), dim=0) > 0.999
