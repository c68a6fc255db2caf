"""MostPop: every user gets the items with the most training interactions."""

from __future__ import annotations

import torch

from dgl_synergraph.graphs.hetero import Heterograph, INTERACTS, ITEM, USER
from dgl_synergraph.models.base import Recommender


class MostPop(Recommender):
    """Most popular training items for everyone (no hyperparameters).

    Args:
        graph: the dataset heterograph; item popularity is the item's training degree.
    """

    trainable = False

    def __init__(self, graph: Heterograph):
        super().__init__()
        popularity = graph.in_degrees(etype=INTERACTS)
        n_items = graph.num_nodes(ITEM)
        # Ties are broken by item id (lower id first) so rankings are deterministic.
        tie_break = torch.arange(n_items, dtype=torch.float64) / (2.0 * n_items)
        score = popularity.double() - tie_break
        self.register_buffer("item_score", score.float()[:, None])
        self.register_buffer("user_ones", torch.ones(graph.num_nodes(USER), 1))

    def embeddings(self):
        return self.user_ones, self.item_score
