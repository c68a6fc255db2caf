"""MGCN (Yu et al., ACM MM 2023) as in MMRec: purifier, user-item view, item-item view over
modality kNN graphs, behaviour-aware fuser, InfoNCE between side and content embeddings.

SynerGraph (``models/synergraph.py``) extends this module; MODELS.md 1.4 explains why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from dgl_synergraph.graphs.hetero import Heterograph, ITEM, USER
from dgl_synergraph.graphs.recipes import knn_relation
from dgl_synergraph.losses import bpr_loss, info_nce, l2_penalty
from dgl_synergraph.models.base import (Neighbours, Recommender, batch_rows, from_neighbours, imputed_behaviour,
                                        non_negative, positive, xavier_table)
from dgl_synergraph.nn.multimodal import BehaviorAwareFuser, ModalityProjection, Purifier, gate_diagnostics, gate_penalty
from dgl_synergraph.nn.propagation import ItemGraphEncoder, LightGCNEncoder
from dgl_synergraph.utils import take_rows


@dataclass
class MultimodalViews:
    """Everything one forward pass produces; losses pick what they need."""

    user: torch.Tensor  # final user embeddings (content + side)
    item: torch.Tensor  # final item embeddings
    content_user: torch.Tensor  # user-item (behaviour) view
    content_item: torch.Tensor
    side_user: torch.Tensor  # fused modality view
    side_item: torch.Tensor
    modal_user: dict[str, torch.Tensor]  # per-modality views after the item-item encoder
    modal_item: dict[str, torch.Tensor]
    purified: dict[str, torch.Tensor]  # per-modality item inputs of the item-item encoder


class MGCN(Recommender):
    """MGCN: purifier, item-item + user-item views, fuser, InfoNCE.

    ``graph`` carries one kNN relation per modality, built by ``graphs.recipes.modality_knn``
    from ``modalities`` and the ``knn_*`` settings; ``features`` holds those modalities' tables.

    Args:
        embedding_dim: size of the ID embeddings and of every projected modality.
        reg_weight: L2 weight on the batch's final user, positive and negative embeddings.
        modalities: "all", or a comma list of feature names such as "text" or "image,text".
        knn_k: neighbours per item in each modality kNN graph.
        knn_weighting: kNN edge weights: cosine "similarity" or "binary" (1 per kept neighbour).
        knn_self_loop: whether an item may be its own neighbour in the kNN graph.
        n_ui_layers: LightGCN layers of the user-item view.
        n_ii_layers: propagation layers over each item-item graph.
        cl_weight: weight of the InfoNCE between side (modality) and content views; 0 = off.
        cl_temperature: InfoNCE temperature.
        purifier: gate each projected modality by the item ID embedding (MGCN's purifier).
        finetune_features: train the raw feature tables too (MMRec does); False keeps them frozen.
        gate_norm: LayerNorm on the projected feature before the purifier's gate (an ablation
            against gate saturation; on Baby it did not stop it, docs/results.md); off in MGCN.
        feature_norm: "l2" scales each raw feature row to unit length before the projection;
            "none" keeps the raw rows (MGCN).
        gate_decay: L2 weight on the purifier gates' weights and biases (an ablation against gate
            saturation; on Baby it kept the text gates unsaturated, not the image gates, and cost
            validation recall, docs/results.md); 0 = off, as in the papers. With gate_norm the
            decay is on the norm's gain and shift too (the composed map), which bounds each gate
            logit by construction: with both (0.001, SynerGraph's Clothing default) no gate
            saturated on Baby, Sports or Clothing.
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
        knn_weighting: Literal["similarity", "binary"] = "similarity",
        knn_self_loop: bool = True,
        n_ui_layers: int = 2,
        n_ii_layers: int = 1,
        cl_weight: float = 0.01,
        cl_temperature: float = 0.2,
        purifier: bool = True,
        finetune_features: bool = True,
        gate_norm: bool = False,
        feature_norm: Literal["none", "l2"] = "none",
        gate_decay: float = 0.0,
    ):
        super().__init__()
        if not features:
            raise ValueError("a multimodal model needs at least one modality")
        non_negative(reg_weight=reg_weight, n_ui_layers=n_ui_layers, n_ii_layers=n_ii_layers, gate_decay=gate_decay)
        positive(cl_temperature=cl_temperature)
        self.modalities = sorted(features)
        n_users, n_items = graph.num_nodes(USER), graph.num_nodes(ITEM)
        self.user_embedding = xavier_table(n_users, embedding_dim)
        self.item_embedding = xavier_table(n_items, embedding_dim)
        self.projections = nn.ModuleDict(
            {m: ModalityProjection(features[m], embedding_dim, finetune_features, unit_rows=feature_norm == "l2")
             for m in self.modalities})
        self.purifiers = (nn.ModuleDict({m: Purifier(embedding_dim, gate_norm) for m in self.modalities})
                          if purifier else None)
        self.ui_encoder = LightGCNEncoder(graph, n_ui_layers)
        self.ii_encoders = nn.ModuleDict(
            {m: ItemGraphEncoder(graph, knn_relation(m), n_ii_layers) for m in self.modalities})
        self.fuser = BehaviorAwareFuser(embedding_dim, self.modalities)
        self.reg_weight = reg_weight
        self.cl_weight = cl_weight
        self.cl_temperature = cl_temperature
        self.gate_decay = gate_decay
        self.cold_start_knn = (knn_k, knn_weighting)

    def views(self, user_rows: torch.Tensor | None = None, item_rows: torch.Tensor | None = None) -> MultimodalViews:
        """Every view of every node; with ``user_rows`` / ``item_rows`` (distinct ids), every view
        of those users / items only, row i for ``user_rows[i]`` / ``item_rows[i]``. The graph
        encoders still run over all nodes, but the fuser works row by row and a training step
        needs it, and every gradient from the losses, only at the batch's rows."""
        content_user, content_item = self.ui_encoder(self.user_embedding, self.item_embedding, user_rows, item_rows)
        purified, modal_user, modal_item = {}, {}, {}
        for m in self.modalities:
            projected = self.projections[m]()
            purified[m] = self.purifiers[m](self.item_embedding, projected) if self.purifiers is not None else projected
            modal_item[m] = self.ii_encoders[m](purified[m])
            modal_user[m] = self.ui_encoder.items_to_users(modal_item[m], user_rows)
        if item_rows is not None:
            modal_item = {m: take_rows(view, item_rows) for m, view in modal_item.items()}
            purified = {m: take_rows(view, item_rows) for m, view in purified.items()}
        # One fuser call over users and items together: it is row-wise with shared weights, and a
        # step's few thousand rows cost it per operation rather than per row.
        side = self.fuser({m: torch.cat([modal_user[m], modal_item[m]]) for m in self.modalities},
                          torch.cat([content_user, content_item]))
        side_user, side_item = side[: len(content_user)], side[len(content_user):]
        return MultimodalViews(content_user + side_user, content_item + side_item, content_user, content_item,
                               side_user, side_item, modal_user, modal_item, purified)

    def embeddings(self):
        views = self.views()
        return views.user, views.item

    @torch.no_grad()
    def cold_item_embeddings(self, neighbours: Neighbours) -> torch.Tensor:
        """Each modality view is one item-item step from the new item's content neighbours'
        purified rows; its behaviour view is imputed from theirs; the fuser combines the views
        under it, and the final embedding adds them, as for every item."""
        _, content_item = self.ui_encoder(self.user_embedding, self.item_embedding)
        behaviour = imputed_behaviour(content_item, neighbours)
        modal = {}
        for m in self.modalities:
            projected = self.projections[m]()
            purified = self.purifiers[m](self.item_embedding, projected) if self.purifiers is not None else projected
            modal[m] = from_neighbours(self.ii_encoders[m].last_input(purified), neighbours[m])
        return behaviour + self.fuser(modal, behaviour)

    def loss(self, users, pos_items, neg_items):
        user_rows, item_rows, users_at, pos_at, neg_at = batch_rows(users, pos_items, neg_items)
        return self.loss_terms(self.views(user_rows, item_rows), users_at, pos_at, neg_at)

    def loss_terms(self, views: MultimodalViews, users, pos_items, neg_items) -> dict[str, torch.Tensor]:
        """The loss terms of a batch from ``views``, whose rows ``users``, ``pos_items`` and
        ``neg_items`` index: node ids with every node's views, positions with the batch's."""
        u, p, n = views.user[users], views.item[pos_items], views.item[neg_items]
        terms = {
            "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
            "reg": self.reg_weight * l2_penalty(u, p, n),  # MGCN regularises the final embeddings
        }
        if self.cl_weight > 0:
            terms["infonce"] = self.cl_weight * (
                info_nce(views.side_item, views.content_item, self.cl_temperature, self.similarity_dtype,
                         rows=pos_items)
                + info_nce(views.side_user, views.content_user, self.cl_temperature, self.similarity_dtype,
                           rows=users))
        if self.gate_decay > 0:
            terms["gate_reg"] = self.gate_decay * gate_penalty(self.purifiers)
        terms.update(self.auxiliary_losses(views, users, pos_items, neg_items))
        return terms

    def auxiliary_losses(self, views: MultimodalViews, users, pos_items, neg_items) -> dict[str, torch.Tensor]:
        """Extra loss terms of models built on MGCN (batch indexed as in :meth:`loss_terms`); none here."""
        return {}

    def training_diagnostics(self) -> dict[str, float]:
        """Per-modality purifier gate mean/std of the last forward pass (collapse watch)."""
        return gate_diagnostics(self.purifiers)
