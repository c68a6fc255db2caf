"""Loss functions: pure functions of tensors, shared by every model."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from dgl_synergraph.utils import take_rows


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-mean log sigmoid(s+ - s-), written with softplus for numerical stability."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """1/2 sum of squared L2 norms divided by the batch size (LightGCN's regulariser)."""
    batch = tensors[0].shape[0]
    return sum(t.pow(2).sum() for t in tensors) / (2 * batch)


class _InBatchCrossEntropy(torch.autograd.Function):
    """mean_i (logsumexp_j a_i . p_j - a_i . p_i) with one [B, B] buffer reused from the logits to
    the softmax to the gradient (cross_entropy over a @ p.T allocates and passes over three).
    The softmax is ATen's, in place (one pass, row by row in cache); the loss is -log of its
    diagonal, exact while the positives' probabilities are normal floats, and taken from
    recomputed logits otherwise. The backward scales the two [B, d] products, not the [B, B]
    buffer. Equal to ``F.cross_entropy(a @ p.T, arange(B))`` (tests/test_losses_fast.py).

    ``counts``: row i stands for ``counts[i]`` identical rows of the batch (a user or item drawn
    more than once). Column j then enters every softmax ``counts[j]`` times (a log-count added to
    its logits) and row i's loss weighs ``counts[i]``: the value and gradients of the batch with
    its repeats, from the distinct rows' products."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, p: torch.Tensor, dtype: torch.dtype | None = None,
                counts: torch.Tensor | None = None) -> torch.Tensor:
        # With dtype=bfloat16 the three [B, B] x [B, d] products multiply in bfloat16 (float32
        # accumulation inside the kernel); the softmax, the loss and the gradients keep a's dtype.
        log_counts = None
        if counts is not None:
            log_counts = counts.to(a.dtype).log()
            # Columns padded to a multiple of 16 with count 0 (logit -inf, probability exactly 0):
            # an odd row length of the [B, B] buffer made each product up to 1.7x slower.
            pad = -len(p) % 16
            if pad:
                p = torch.cat([p, p.new_zeros(pad, p.shape[1])])
                log_counts = torch.cat([log_counts, log_counts.new_full((pad,), float("-inf"))])
        a_mul, p_mul = (a, p) if dtype is None else (a.to(dtype), p.to(dtype))
        logits = (a_mul @ p_mul.t()).to(a.dtype)
        if log_counts is not None:
            logits.add_(log_counts)
        probs = torch.softmax(logits, dim=1, out=logits)
        positives = probs.diagonal()
        if positives.min() > torch.finfo(probs.dtype).tiny:
            per_row = -positives.log()  # with counts, softmax's diagonal is counts_i exp(s_ii) / Z_i
            if log_counts is not None:
                per_row = per_row + log_counts[: len(a)]
        else:  # a positive's probability underflowed: its log needs the log-sum-exp itself
            logits = a @ p.t() if log_counts is None else a @ p.t() + log_counts
            per_row = torch.logsumexp(logits, dim=1) - (a * p[: len(a)]).sum(1)
        weights = None if counts is None else counts.to(a.dtype) / counts.sum()
        ctx.save_for_backward(a_mul, p_mul, probs, weights)
        ctx.spent = False
        return per_row.mean() if weights is None else (per_row * weights).sum()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        if ctx.spent:  # the buffer below was turned into the gradient by the first backward
            raise RuntimeError("info_nce: backward can run only once through this graph")
        ctx.spent = True
        a, p, probs, weights = ctx.saved_tensors
        probs.diagonal().sub_(1.0)  # d loss_i / d logits_i = softmax_i - e_i, row i weighing 1/B or weights_i
        probs = probs.to(a.dtype)  # a copy only when the products are in bfloat16
        if weights is None:
            scale = grad / len(a)
            grad_a = (probs @ p).to(grad.dtype).mul_(scale) if ctx.needs_input_grad[0] else None  # None: a stop-gradient anchor
            grad_p = (probs.t() @ a).to(grad.dtype).mul_(scale) if ctx.needs_input_grad[1] else None
        else:  # the row weights scale the [B, d] sides: grad_a's rows, and a's rows before probs.T
            scale = (grad * weights).unsqueeze(1)
            grad_a = (probs @ p).to(grad.dtype).mul_(scale) if ctx.needs_input_grad[0] else None
            # all columns' rows, then the padding's dropped: a sliced transposed operand was copied
            grad_p = ((probs.t() @ (a.to(grad.dtype) * scale).to(a.dtype))[: len(a)].to(grad.dtype)
                      if ctx.needs_input_grad[1] else None)
        return grad_a, grad_p, None, None


#: info_nce(rows=...) takes the distinct-row form when the distinct rows are at most this share of
#: the batch (a fifth fewer products or better); nearer 1 the extra passes eat the gain
#: (benchmarks/info_nce.py, Baby: users, 93% distinct, 0.93x with bf16 products and 1.0-1.1x with
#: fp32; items, 71% distinct, 1.3-1.4x bf16 and 1.9x fp32).
DISTINCT_ROWS_AT_MOST = 0.9


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, temperature: float,
             dtype: torch.dtype | None = None, rows: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch InfoNCE on cosine similarity: row i of ``positive`` is anchor i's positive, every
    other row a negative. -mean log( exp(cos(a_i, p_i)/t) / sum_j exp(cos(a_i, p_j)/t) ).
    ``dtype``: of the similarity products, if not the inputs' own (a model's ``similarity_dtype``:
    bfloat16 under the run setting ``precision=bf16``).

    ``rows``: the batch is ``anchor[rows]`` against ``positive[rows]`` (full tables in, repeats
    allowed). The same value and gradients as passing those rows, computed over the distinct rows
    with their counts where they are few enough (``DISTINCT_ROWS_AT_MOST``): a Baby batch of 2,048
    interactions holds ~1,460 distinct items, so the item term needs half the [B, B] products."""
    counts = None
    if rows is not None:
        distinct, counts = torch.unique(rows, return_counts=True)
        if len(distinct) <= DISTINCT_ROWS_AT_MOST * len(rows):
            anchor, positive = take_rows(anchor, distinct), take_rows(positive, distinct)
        else:
            anchor, positive, counts = take_rows(anchor, rows), take_rows(positive, rows), None
    # Scale the [B, d] side, not the [B, B] logits: same value, a fraction of the work.
    a = F.normalize(anchor, dim=1) / temperature
    p = F.normalize(positive, dim=1)
    return _InBatchCrossEntropy.apply(a, p, dtype, counts)


def circle_loss(
    s_p: torch.Tensor,
    s_n: torch.Tensor,
    margin: float = 0.25,
    gamma: float = 64.0,
    negative_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Circle loss (Sun et al., CVPR 2020), pair form, one positive per anchor.

    ``s_p`` [B] and ``s_n`` [B, N] are similarities (cosine). With alpha_p = [1 + m - s_p]_+ and
    alpha_n = [s_n + m]_+ (both detached), Delta_p = 1 - m, Delta_n = m:
    L_i = softplus( logsumexp_j gamma alpha_n (s_n_j - Delta_n) - gamma alpha_p (s_p - Delta_p) ).
    ``negative_mask`` [B, N] marks which negatives count (e.g. to drop the anchor's own item).
    """
    alpha_p = (1 + margin - s_p.detach()).clamp(min=0)
    alpha_n = (s_n.detach() + margin).clamp(min=0)
    logit_p = -gamma * alpha_p * (s_p - (1 - margin))
    logit_n = gamma * alpha_n * (s_n - margin)
    if negative_mask is not None:
        logit_n = logit_n.masked_fill(~negative_mask, float("-inf"))
    return F.softplus(torch.logsumexp(logit_n, dim=1) + logit_p).mean()


def anchor_info_nce(anchor: torch.Tensor, views: list[torch.Tensor], temperature: float,
                    multi_positive: bool = False, dtype: torch.dtype | None = None,
                    rows: torch.Tensor | None = None) -> torch.Tensor:
    """Bind every view to a STOP-GRADIENT anchor (SIGER's anchor-based InfoNCE).

    Default: sum over views of InfoNCE(sg(anchor), view), its products in ``dtype`` and its
    ``rows`` as in :func:`info_nce`. ``multi_positive``: one softmax per anchor row over all views'
    rows, with that row of every view as positives (in the inputs' dtype).
    """
    anchor = anchor.detach()
    if not multi_positive:
        return sum(info_nce(anchor, view, temperature, dtype, rows) for view in views)
    if rows is not None:
        anchor, views = anchor[rows], [view[rows] for view in views]
    a = F.normalize(anchor, dim=1) / temperature
    logits = torch.cat([a @ F.normalize(v, dim=1).t() for v in views], dim=1)  # [B, M*B]
    batch = len(a)
    positives = torch.stack([logits[torch.arange(batch), m * batch + torch.arange(batch)] for m in range(len(views))], 1)
    return (torch.logsumexp(logits, dim=1) - torch.logsumexp(positives, dim=1)).mean()
