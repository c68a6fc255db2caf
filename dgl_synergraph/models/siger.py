"""SIGER ("Semantic Item Graph Enhancement for Multimodal Recommendation", arXiv 2508.06154),
reconstructed as MODELS.md section 2.4 says:

- behaviour encoder: LightGCN over ID embeddings -> b_u, b_i;
- one semantic encoder per modality: projected raw features (``semantic_input="linear"``) or the
  behaviour-gated purified ID embeddings (``"purified"``, MODELS.md 2.4e's alternative, the
  default: see docs/results.md) propagated over that modality's
  kNN graph INFUSED with the collaborative co-occurrence graph ((1 - beta) S^m + beta S^c, built
  by ``graphs.recipes.siger_infused``), users as the normalised sum of their items -> s^m;
- fusion s = mean_m s^m, final e = b + s, scored by dot product;
- modulus-based perturbation (noise norm eps * ||z||) gives two views of the fused semantic
  representation for an in-batch InfoNCE (scoring never perturbs);
- dual alignment: anchor-based InfoNCE binding each modality to the stop-gradient behaviour
  anchor, then a standard InfoNCE between behaviour and fused semantics.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from dgl_synergraph.graphs.hetero import Heterograph, ITEM, USER
from dgl_synergraph.graphs.recipes import semantic_relation
from dgl_synergraph.losses import anchor_info_nce, bpr_loss, info_nce, l2_penalty
from dgl_synergraph.models.base import (Neighbours, Recommender, from_neighbours, imputed_behaviour, non_negative, positive,
                                        xavier_table)
from dgl_synergraph.nn.multimodal import (ModalityProjection, Purifier, gate_diagnostics, gate_penalty,
                                          modulus_perturbation)
from dgl_synergraph.nn.propagation import ItemGraphEncoder, LightGCNEncoder
from dgl_synergraph.utils import take_rows


class SIGER(Recommender):
    """SIGER: collaborative-infused semantic graphs, perturbation CL, dual alignment.

    ``graph`` carries one infused semantic relation per modality, built by
    ``graphs.recipes.siger_infused`` from ``modalities``, ``knn_*``, ``cooc_*``, ``beta`` and
    ``infusion``; ``features`` holds those modalities' tables (always frozen).

    Args:
        embedding_dim: size of the ID embeddings and of every projected modality.
        reg_weight: L2 weight on the batch's layer-0 ID embeddings.
        modalities: "all", or a comma list of feature names such as "text" or "image,text".
        knn_k: neighbours per item in each modality kNN graph.
        knn_weighting: kNN edge weights: cosine "similarity" or "binary".
        cooc_k: neighbours per item in the training co-occurrence graph.
        cooc_cosine: weight co-occurrence edges by cosine (counts / sqrt of degrees) instead of raw counts.
        beta: share of the co-occurrence graph in each semantic graph, in [0, 1]; 0 = no infusion.
        infusion: "mix" mixes normalised graphs; "add_then_normalise" normalises the mixed raw weights.
        n_ui_layers: LightGCN layers of the behaviour encoder.
        n_sem_layers: propagation layers of each semantic encoder.
        eps: perturbation size: noise of norm eps * ||z|| per node.
        perturb_layers: perturb after "all" semantic layers or only the "last".
        perturb_inverse: every row gets noise of norm eps * mean ||z|| (inverse to the modulus) instead.
        cl_weight: weight of the InfoNCE between two perturbed semantic views; 0 = off.
        cl_temperature: temperature of that InfoNCE.
        anchor_weight: weight of the anchor InfoNCE binding each modality to the behaviour anchor.
        anchor_temperature: temperature of the anchor InfoNCE.
        anchor_multi_positive: count every modality of the same node as a positive in the anchor InfoNCE.
        align_weight: weight of the InfoNCE between behaviour and fused semantic embeddings.
        align_temperature: temperature of that InfoNCE.
        semantic_input: "purified" (item IDs gated by the projected features) or "linear" (the projections).
        gate_norm: LayerNorm on the projected feature before the purifier's gate (an ablation
            against gate saturation; on Baby it did not stop it, docs/results.md).
        feature_norm: "l2" scales each raw feature row to unit length before the projection;
            "none" keeps the raw rows.
        gate_decay: L2 weight on the purifier gates' weights and biases (an ablation against gate
            saturation; on Baby it kept the text gates unsaturated, not the image gates, and cost
            validation recall, docs/results.md); 0 = off, as in the papers. With gate_norm the
            decay is on the norm's gain and shift too (the composed map), which bounds each gate
            logit by construction.
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
        cooc_k: int = 10,
        cooc_cosine: bool = True,
        beta: float = 0.5,
        infusion: Literal["mix", "add_then_normalise"] = "mix",
        n_ui_layers: int = 2,
        n_sem_layers: int = 1,
        eps: float = 0.1,
        perturb_layers: Literal["all", "last"] = "all",
        perturb_inverse: bool = False,
        cl_weight: float = 0.01,
        cl_temperature: float = 0.2,
        anchor_weight: float = 0.01,
        anchor_temperature: float = 0.2,
        anchor_multi_positive: bool = False,
        align_weight: float = 0.01,
        align_temperature: float = 0.2,
        semantic_input: Literal["purified", "linear"] = "purified",
        gate_norm: bool = False,
        feature_norm: Literal["none", "l2"] = "none",
        gate_decay: float = 0.0,
    ):
        super().__init__()
        non_negative(reg_weight=reg_weight, n_ui_layers=n_ui_layers, n_sem_layers=n_sem_layers, eps=eps,
                     gate_decay=gate_decay)
        positive(cl_temperature=cl_temperature, anchor_temperature=anchor_temperature,
                 align_temperature=align_temperature)
        self.modalities = sorted(features)
        n_users, n_items = graph.num_nodes(USER), graph.num_nodes(ITEM)
        self.user_embedding = xavier_table(n_users, embedding_dim)
        self.item_embedding = xavier_table(n_items, embedding_dim)
        self.projections = nn.ModuleDict({m: ModalityProjection(features[m], embedding_dim, finetune=False,
                                                                unit_rows=feature_norm == "l2")
                                          for m in self.modalities})
        # None with the "linear" input: the projected features themselves enter the semantic branch
        self.purifiers = (nn.ModuleDict({m: Purifier(embedding_dim, gate_norm) for m in self.modalities})
                          if semantic_input == "purified" else None)
        self.ui_encoder = LightGCNEncoder(graph, n_ui_layers)
        # one propagation step each; layers are looped here so noise can be added between them
        self.sem_steps = nn.ModuleDict({m: ItemGraphEncoder(graph, semantic_relation(m), 1) for m in self.modalities})
        self.n_sem_layers = n_sem_layers
        self.reg_weight = reg_weight
        self.eps, self.perturb_layers, self.perturb_inverse = eps, perturb_layers, perturb_inverse
        self.cl_weight, self.cl_temperature = cl_weight, cl_temperature
        self.anchor_weight, self.anchor_temperature = anchor_weight, anchor_temperature
        self.anchor_multi_positive = anchor_multi_positive
        self.align_weight, self.align_temperature = align_weight, align_temperature
        self.gate_decay = gate_decay
        self.cold_start_knn = (knn_k, knn_weighting)

    def training_diagnostics(self) -> dict[str, float]:
        return gate_diagnostics(self.purifiers)

    def _perturb(self, z: torch.Tensor) -> torch.Tensor:
        return modulus_perturbation(z, self.eps, self.perturb_inverse)

    def project(self) -> dict[str, torch.Tensor]:
        """Semantic encoder input per modality (shared by the clean and perturbed passes): the
        projected raw features, or the item ID embeddings gated by them."""
        if self.purifiers is None:
            return {m: self.projections[m]() for m in self.modalities}
        return {m: self.purifiers[m](self.item_embedding, self.projections[m]()) for m in self.modalities}

    def semantic(self, projected: dict[str, torch.Tensor], perturb: bool = False,
                 shared: dict[str, torch.Tensor] | None = None
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Per-modality semantic item representations (optionally perturbed), and each
        modality's clean output of the first perturbed layer. Noise enters only after that
        layer, so a perturbed pass given those outputs as ``shared`` starts from them instead of
        propagating the clean layers again (the same values; one sparse product less per
        modality and pass)."""
        first_perturbed = 0 if self.perturb_layers == "all" else max(self.n_sem_layers - 1, 0)
        start = first_perturbed if shared is not None else 0
        items, clean = {}, {}
        for m in self.modalities:
            h = projected[m]
            for layer in range(start, self.n_sem_layers):
                h = shared[m] if shared is not None and layer == start else self.sem_steps[m](h)
                if layer == first_perturbed:
                    clean[m] = h
                if perturb and (self.perturb_layers == "all" or layer == self.n_sem_layers - 1):
                    h = self._perturb(h)
            if perturb and self.n_sem_layers == 0:
                h = self._perturb(h)
            items[m] = h
        return items, clean

    @staticmethod
    def _fuse(views: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(views.values())).mean(0)

    def embeddings(self):
        b_user, b_item = self.ui_encoder(self.user_embedding, self.item_embedding)
        fused_item = self._fuse(self.semantic(self.project())[0])
        return b_user + self.ui_encoder.items_to_users(fused_item), b_item + fused_item

    @torch.no_grad()
    def cold_item_embeddings(self, neighbours: Neighbours) -> torch.Tensor:
        """A new item has no co-occurrence edges: each semantic view is one step from its content
        neighbours' rows of the last semantic layer's input, averaged over the modalities as for
        every item; its behaviour view is imputed from its neighbours'; the final adds them."""
        _, b_item = self.ui_encoder(self.user_embedding, self.item_embedding)
        projected = self.project()
        views = {}
        for m in self.modalities:
            h = projected[m]
            for _ in range(max(self.n_sem_layers - 1, 0)):
                h = self.sem_steps[m](h)
            views[m] = from_neighbours(h, neighbours[m])
        return imputed_behaviour(b_item, neighbours) + self._fuse(views)

    def loss(self, users, pos_items, neg_items):
        # Every user-side term needs the batch's users only: their behaviour view and their
        # item-to-user sums are taken at those rows (row i for user_rows[i]), not for every user.
        user_rows, user_at = torch.unique(users, return_inverse=True)
        b_user, b_item = self.ui_encoder(self.user_embedding, self.item_embedding, user_rows)
        projected = self.project()
        s_item, shared = self.semantic(projected)
        fused_item = self._fuse(s_item)
        # items_to_users is linear: the users' view of the modality mean is the mean of their
        # per-modality views, in one sparse product instead of one per modality
        fused_user = self.ui_encoder.items_to_users(fused_item, user_rows)
        e_user, e_item = b_user + fused_user, b_item + fused_item
        u, p, n = e_user[user_at], take_rows(e_item, pos_items), take_rows(e_item, neg_items)
        terms = {
            "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
            "reg": self.reg_weight * l2_penalty(take_rows(self.user_embedding, users),
                                                take_rows(self.item_embedding, pos_items),
                                                take_rows(self.item_embedding, neg_items)),
        }
        if self.cl_weight > 0:
            view1 = self._fuse(self.semantic(projected, perturb=True, shared=shared)[0])
            view2 = self._fuse(self.semantic(projected, perturb=True, shared=shared)[0])
            terms["perturb_cl"] = self.cl_weight * (
                info_nce(self.ui_encoder.items_to_users(view1, user_rows),
                         self.ui_encoder.items_to_users(view2, user_rows),
                         self.cl_temperature, self.similarity_dtype, rows=user_at)
                + info_nce(view1, view2, self.cl_temperature, self.similarity_dtype, rows=pos_items))
        if self.anchor_weight > 0:
            s_user = {m: self.ui_encoder.items_to_users(s_item[m], user_rows) for m in self.modalities}
            terms["anchor"] = self.anchor_weight * (
                anchor_info_nce(b_user, [s_user[m] for m in self.modalities], self.anchor_temperature,
                                self.anchor_multi_positive, self.similarity_dtype, rows=user_at)
                + anchor_info_nce(b_item, [s_item[m] for m in self.modalities], self.anchor_temperature,
                                  self.anchor_multi_positive, self.similarity_dtype, rows=pos_items))
        if self.align_weight > 0:
            terms["align"] = self.align_weight * (
                info_nce(b_user, fused_user, self.align_temperature, self.similarity_dtype, rows=user_at)
                + info_nce(b_item, fused_item, self.align_temperature, self.similarity_dtype, rows=pos_items))
        if self.gate_decay > 0:
            terms["gate_reg"] = self.gate_decay * gate_penalty(self.purifiers)
        return terms
