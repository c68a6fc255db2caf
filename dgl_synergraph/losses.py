"""Loss functions: pure functions of tensors, shared by every model."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """-mean log sigmoid(s+ - s-), written with softplus for numerical stability."""
    return F.softplus(neg_scores - pos_scores).mean()


def l2_penalty(*tensors: torch.Tensor) -> torch.Tensor:
    """1/2 sum of squared L2 norms divided by the batch size (LightGCN's regulariser)."""
    batch = tensors[0].shape[0]
    return sum(t.pow(2).sum() for t in tensors) / (2 * batch)
