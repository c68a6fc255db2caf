"""FREEDOM (Zhou & Shen, ACM MM 2023) as in MMRec: a frozen, mixed modality kNN graph over item
ID embeddings, added to a LightGCN user-item view whose edges are pruned each epoch
(degree-sensitive edge pruning), trained with BPR plus modality BPR terms."""

from __future__ import annotations

import torch
from torch import nn

from dgl_synergraph.errors import require
from dgl_synergraph.graphs.hetero import Heterograph, INTERACTS, ITEM, USER, build_heterograph, degree_norm
from dgl_synergraph.graphs.recipes import MIXED_RELATION, mixing_weights
from dgl_synergraph.losses import bpr_loss
from dgl_synergraph.models.base import (Neighbours, Recommender, batch_rows, from_neighbours, imputed_behaviour,
                                        non_negative, xavier_table)
from dgl_synergraph.nn.multimodal import ModalityProjection
from dgl_synergraph.nn.propagation import ItemGraphEncoder, LightGCNEncoder, backend_of, set_backend
from dgl_synergraph.utils import take_rows


class FREEDOM(Recommender):
    """FREEDOM: frozen mixed kNN item graph + pruned LightGCN.

    ``graph`` carries the mixed relation built by ``graphs.recipes.freedom_mixed`` from
    ``modalities``, ``knn_k`` and ``image_weight``; ``features`` holds those modalities' tables.

    Args:
        embedding_dim: size of the ID embeddings and of every projected modality.
        reg_weight: weight of the modality BPR terms (MMRec FREEDOM's reg_weight).
        modalities: "all", or a comma list of feature names such as "text" or "image,text".
        knn_k: neighbours per item in each (binary) modality kNN graph.
        image_weight: share of the image graph in the mixed graph; the rest is spread over the others.
        n_ui_layers: LightGCN layers of the user-item view.
        n_mm_layers: propagation layers over the mixed item-item graph.
        dropout: share of user-item edges pruned each epoch (degree-sensitive), in [0, 1).
        finetune_features: train the raw feature tables too (MMRec does); False keeps them frozen.
    """

    def __init__(
        self,
        graph: Heterograph,
        features: dict[str, torch.Tensor],
        *,
        embedding_dim: int = 64,
        reg_weight: float = 1e-4,
        modalities: str = "all",
        knn_k: int = 10,
        image_weight: float = 0.1,
        n_ui_layers: int = 2,
        n_mm_layers: int = 1,
        dropout: float = 0.8,
        finetune_features: bool = True,
    ):
        super().__init__()
        non_negative(reg_weight=reg_weight, n_ui_layers=n_ui_layers, n_mm_layers=n_mm_layers)
        require(0 <= dropout < 1, f"dropout: must be in [0, 1), got {dropout}")
        n_users, n_items = graph.num_nodes(USER), graph.num_nodes(ITEM)
        self.n_users, self.n_items, self.n_ui_layers = n_users, n_items, n_ui_layers
        self.user_embedding = xavier_table(n_users, embedding_dim)
        self.item_embedding = xavier_table(n_items, embedding_dim)
        self.projections = nn.ModuleDict({m: ModalityProjection(f, embedding_dim, finetune_features)
                                          for m, f in sorted(features.items())})
        self.ui_encoder = LightGCNEncoder(graph, n_ui_layers)
        self.train_encoder = self.ui_encoder
        self.mm_encoder = ItemGraphEncoder(graph, MIXED_RELATION, n_mm_layers)
        self.modality_bpr_weight = reg_weight
        self.dropout = dropout
        self.cold_start_knn = (knn_k, "binary")
        self.mixing = mixing_weights(sorted(features), image_weight)
        users, items = graph.edges(etype=INTERACTS)  # the training pairs, in their original order
        self.train_pairs = torch.stack([users, items], dim=1)
        # Sampling weight of each edge: its symmetric-normalised value 1/sqrt(d_u d_i).
        d_u = degree_norm(torch.bincount(users, minlength=n_users))
        d_i = degree_norm(torch.bincount(items, minlength=n_items))
        self.edge_weight = d_u[users] * d_i[items]

    def on_epoch_start(self) -> None:
        """Degree-sensitive edge pruning: keep (1 - dropout) of the edges, drawn by weight."""
        if self.dropout <= 0:
            self.train_encoder = self.ui_encoder
            return
        keep = int(len(self.edge_weight) * (1.0 - self.dropout))
        kept = torch.multinomial(self.edge_weight, keep, replacement=False)
        pruned = build_heterograph(self.n_users, self.n_items, self.train_pairs[kept])
        self.train_encoder = LightGCNEncoder(pruned, self.n_ui_layers).to(self.user_embedding.device)
        set_backend(self.train_encoder, backend_of(self.ui_encoder))

    def _forward(self, encoder: LightGCNEncoder) -> tuple[torch.Tensor, torch.Tensor]:
        mm_items = self.mm_encoder(self.item_embedding)
        users, items = encoder(self.user_embedding, self.item_embedding)
        return users, items + mm_items

    def embeddings(self):
        return self._forward(self.ui_encoder)

    @torch.no_grad()
    def cold_item_embeddings(self, neighbours: Neighbours) -> torch.Tensor:
        """The new item's item-item view is one step over the mixed graph (each modality's
        neighbours weighted as the graphs are mixed); its user-item view is imputed from its
        neighbours' with the same weights; the final embedding adds them, as for every item."""
        _, ui_items = self.ui_encoder(self.user_embedding, self.item_embedding)
        rows = self.mm_encoder.last_input(self.item_embedding)
        mixed_step = sum(share * from_neighbours(rows, neighbours[m]) for m, share in self.mixing.items())
        return imputed_behaviour(ui_items, neighbours, self.mixing) + mixed_step

    def loss(self, users, pos_items, neg_items):
        # Only the batch's distinct users and items are scored: the encoders' last layers and the
        # projections reach just those rows (row-wise or per-row sums: the same values, and the
        # same zero gradient for every other row).
        user_rows, rows, users_at, pos_rows, neg_rows = batch_rows(users, pos_items, neg_items)
        user_emb, item_emb = self.train_encoder(self.user_embedding, self.item_embedding, user_rows, rows)
        item_emb = item_emb + take_rows(self.mm_encoder(self.item_embedding), rows)
        u = user_emb[users_at]
        terms = {"bpr": bpr_loss((u * item_emb[pos_rows]).sum(-1), (u * item_emb[neg_rows]).sum(-1))}
        if self.modality_bpr_weight > 0:
            modal = 0.0
            for projection in self.projections.values():
                feats = projection(rows)
                modal = modal + bpr_loss((u * feats[pos_rows]).sum(-1), (u * feats[neg_rows]).sum(-1))
            terms["modality_bpr"] = self.modality_bpr_weight * modal
        return terms
