"""Top-K ranking metrics from a hit matrix (tensor ops, one row per user).

``hits[u, r]`` is True when the item ranked r-th (0-based) for user u is one of the user's
held-out items; ``n_relevant[u]`` is the number of held-out items. Definitions follow MMRec:
- recall@K    = hits in top-K / n_relevant
- precision@K = hits in top-K / K
- hit@K       = 1 if any hit in top-K
- ndcg@K      = DCG@K / IDCG@K with binary gains 1/log2(rank+2), IDCG over min(n_relevant, K)
- map@K       = sum_{r<K} precision@(r+1) * hit_r / min(n_relevant, K)
"""

from __future__ import annotations

import torch

METRICS = ("recall", "ndcg", "precision", "map", "hit")


def metric_sums(hits: torch.Tensor, n_relevant: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-metric SUMS over the users of this batch (divide by the user count at the end)."""
    max_k = hits.shape[1]
    if any(k > max_k for k in ks):
        raise ValueError("hits has fewer columns than the largest K")
    hits = hits.double()
    n_relevant = n_relevant.double()
    positions = torch.arange(1, max_k + 1, dtype=torch.float64, device=hits.device)
    discounts = 1.0 / torch.log2(positions + 1.0)
    cum_hits = hits.cumsum(1)
    dcg = (hits * discounts).cumsum(1)
    ideal = discounts.cumsum(0)
    ap_terms = (cum_hits / positions * hits).cumsum(1)
    out = {}
    for k in ks:
        found = cum_hits[:, k - 1]
        capped = n_relevant.clamp(max=k)
        out[f"recall@{k}"] = (found / n_relevant).sum()
        out[f"precision@{k}"] = (found / k).sum()
        out[f"hit@{k}"] = (found > 0).double().sum()
        out[f"ndcg@{k}"] = (dcg[:, k - 1] / ideal[capped.long() - 1]).sum()
        out[f"map@{k}"] = (ap_terms[:, k - 1] / capped).sum()
    return out
