"""BPR-MF: matrix factorisation trained with the BPR loss (Rendle et al., 2009)."""

from __future__ import annotations

from dgl_synergraph.graphs.hetero import Heterograph, ITEM, USER
from dgl_synergraph.losses import bpr_loss, l2_penalty
from dgl_synergraph.models.base import Recommender, non_negative, xavier_table
from dgl_synergraph.utils import take_rows


class BPRMF(Recommender):
    """Matrix factorisation with the BPR loss.

    Args:
        embedding_dim: size of the user and item embeddings.
        reg_weight: L2 weight on the batch's user, positive and negative embeddings.
    """

    def __init__(self, graph: Heterograph, *, embedding_dim: int = 64, reg_weight: float = 1e-4):
        super().__init__()
        non_negative(reg_weight=reg_weight)
        self.user_embedding = xavier_table(graph.num_nodes(USER), embedding_dim)
        self.item_embedding = xavier_table(graph.num_nodes(ITEM), embedding_dim)
        self.reg_weight = reg_weight

    def embeddings(self):
        return self.user_embedding, self.item_embedding

    def loss(self, users, pos_items, neg_items):
        u = take_rows(self.user_embedding, users)
        p = take_rows(self.item_embedding, pos_items)
        n = take_rows(self.item_embedding, neg_items)
        return {
            "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
            "reg": self.reg_weight * l2_penalty(u, p, n),
        }
