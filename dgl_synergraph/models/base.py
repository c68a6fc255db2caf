"""What every recommender exposes to the trainer, evaluator and API."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dgl_synergraph.errors import require


def positive(**values: float) -> None:
    """Reject any value <= 0, naming it (``positive(cl_temperature=t)``)."""
    for name, value in values.items():
        require(value > 0, f"{name}: must be > 0, got {value}")


def non_negative(**values: float) -> None:
    """Reject any value < 0, naming it (layer counts, loss weights)."""
    for name, value in values.items():
        require(value >= 0, f"{name}: must be >= 0, got {value}")


def xavier_table(rows: int, dim: int) -> nn.Parameter:
    """An ID embedding table with Xavier-uniform initialisation (MMRec's default)."""
    positive(embedding_dim=dim)
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, dim)))


class Recommender(nn.Module):
    """A model scores users against all items through a (user, item) embedding pair.

    Subclasses implement :meth:`embeddings` (final user and item tables) and :meth:`loss`.
    Models with nothing to learn set ``trainable = False``.
    """

    trainable: bool = True

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for one batch; the trainer minimises their sum."""
        raise NotImplementedError

    def on_epoch_start(self) -> None:
        """Called by the trainer before each training epoch (e.g. to resample a pruned graph)."""

    def training_diagnostics(self) -> dict[str, float]:
        """Numbers worth logging at each evaluation (e.g. gate statistics); none by default."""
        return {}

    @torch.no_grad()
    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Return ``score(users) -> [len(users), n_items]`` with embeddings computed once."""
        user_emb, item_emb = self.embeddings()
        item_t = item_emb.t().contiguous()
        return lambda users: user_emb[users] @ item_t
