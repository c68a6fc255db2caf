"""BPR-MF: matrix factorisation trained with the BPR loss (Rendle et al., 2009)."""

from __future__ import annotations


from dgl_synergraph.losses import bpr_loss, l2_penalty
from dgl_synergraph.models.base import Recommender, xavier_table


class BPRMF(Recommender):
    def __init__(self, n_users: int, n_items: int, embedding_dim: int, reg_weight: float):
        super().__init__()
        self.user_embedding = xavier_table(n_users, embedding_dim)
        self.item_embedding = xavier_table(n_items, embedding_dim)
        self.reg_weight = reg_weight

    def embeddings(self):
        return self.user_embedding, self.item_embedding

    def loss(self, users, pos_items, neg_items):
        u = self.user_embedding[users]
        p = self.item_embedding[pos_items]
        n = self.item_embedding[neg_items]
        return {
            "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
            "reg": self.reg_weight * l2_penalty(u, p, n),
        }
