"""LightGCN (He et al., SIGIR 2020) on the interaction relations of the dataset heterograph."""

from __future__ import annotations

import dgl

from dgl_synergraph.losses import bpr_loss, l2_penalty
from dgl_synergraph.models.base import Recommender, xavier_table
from dgl_synergraph.nn.propagation import LightGCNEncoder


class LightGCN(Recommender):
    def __init__(self, graph: dgl.DGLGraph, embedding_dim: int, n_layers: int, reg_weight: float):
        super().__init__()
        n_users, n_items = graph.num_nodes("user"), graph.num_nodes("item")
        self.user_embedding = xavier_table(n_users, embedding_dim)
        self.item_embedding = xavier_table(n_items, embedding_dim)
        self.encoder = LightGCNEncoder(graph, n_layers)
        self.reg_weight = reg_weight

    def embeddings(self):
        return self.encoder(self.user_embedding, self.item_embedding)

    def loss(self, users, pos_items, neg_items):
        user_emb, item_emb = self.embeddings()
        u, p, n = user_emb[users], item_emb[pos_items], item_emb[neg_items]
        # Regularise the layer-0 (ego) embeddings, as in the LightGCN paper.
        reg = l2_penalty(self.user_embedding[users], self.item_embedding[pos_items], self.item_embedding[neg_items])
        return {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)), "reg": self.reg_weight * reg}
