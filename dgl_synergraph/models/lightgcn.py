"""LightGCN (He et al., SIGIR 2020) on the interaction relations of the dataset heterograph."""

from __future__ import annotations

from dgl_synergraph.graphs.hetero import Heterograph, ITEM, USER
from dgl_synergraph.losses import bpr_loss, l2_penalty
from dgl_synergraph.models.base import Recommender, batch_rows, non_negative, xavier_table
from dgl_synergraph.nn.propagation import LightGCNEncoder
from dgl_synergraph.utils import take_rows


class LightGCN(Recommender):
    """LightGCN on the user-item graph.

    Args:
        embedding_dim: size of the layer-0 user and item embeddings.
        n_layers: propagation layers; the output is the mean of layers 0..n_layers.
        reg_weight: L2 weight on the batch's layer-0 embeddings.
    """

    def __init__(self, graph: Heterograph, *, embedding_dim: int = 64, n_layers: int = 3, reg_weight: float = 1e-4):
        super().__init__()
        non_negative(n_layers=n_layers, reg_weight=reg_weight)
        self.user_embedding = xavier_table(graph.num_nodes(USER), embedding_dim)
        self.item_embedding = xavier_table(graph.num_nodes(ITEM), embedding_dim)
        self.encoder = LightGCNEncoder(graph, n_layers)
        self.reg_weight = reg_weight

    def embeddings(self):
        return self.encoder(self.user_embedding, self.item_embedding)

    def loss(self, users, pos_items, neg_items):
        # only the batch's distinct users and items: the encoder's last layer reaches just them
        user_rows, item_rows, users_at, pos_at, neg_at = batch_rows(users, pos_items, neg_items)
        user_emb, item_emb = self.encoder(self.user_embedding, self.item_embedding, user_rows, item_rows)
        u, p, n = user_emb[users_at], item_emb[pos_at], item_emb[neg_at]
        # Regularise the layer-0 (ego) embeddings, as in the LightGCN paper.
        reg = l2_penalty(take_rows(self.user_embedding, users), take_rows(self.item_embedding, pos_items),
                         take_rows(self.item_embedding, neg_items))
        return {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)), "reg": self.reg_weight * reg}
