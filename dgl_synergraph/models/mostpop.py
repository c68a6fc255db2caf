"""MostPop: every user gets the items with the most training interactions."""

from __future__ import annotations

import torch

from dgl_synergraph.models.base import Recommender


class MostPop(Recommender):
    trainable = False

    def __init__(self, n_users: int, popularity: torch.Tensor):
        super().__init__()
        n_items = popularity.shape[0]
        # Ties are broken by item id (lower id first) so rankings are deterministic.
        tie_break = torch.arange(n_items, dtype=torch.float64) / (2.0 * n_items)
        score = popularity.double() - tie_break
        self.register_buffer("item_score", score.float()[:, None])
        self.register_buffer("user_ones", torch.ones(n_users, 1))

    def embeddings(self):
        return self.user_ones, self.item_score
