"""SynerGraph (Burabak & Aytekin, arXiv 2405.19031), reconstructed as MODELS.md 1.3b / 1.4 says:
an MGCN-style model (purifier, item-item encoder over top-K modality graphs, user-item encoder,
fusion) trained with a **purifier circle loss** instead of, or next to, MGCN's InfoNCE.

Circle-loss placements (``circle_on``):
- ``user_fused`` (default): anchor = final user embedding; positive = the observed item's fused
  embedding; negatives = the same item's single-modality embeddings (and, with
  ``circle_in_batch_negatives``, the fused embeddings of the other in-batch items).
- ``purifier``: anchor = purified item embedding of each modality; positive = the item's
  behaviour (user-item view) embedding; negatives = the other in-batch items' behaviour
  embeddings.
- ``side_content``: anchor = fused side embedding; positive = behaviour embedding; negatives =
  other in-batch behaviour embeddings; for batch items and batch users (MGCN's pairing).
- ``both``: ``user_fused`` + ``purifier``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from dgl_synergraph.errors import require
from dgl_synergraph.graphs.hetero import Heterograph
from dgl_synergraph.losses import circle_loss
from dgl_synergraph.models.base import non_negative, positive
from dgl_synergraph.models.mgcn import MGCN, MultimodalViews


def _in_batch_circle(anchor: torch.Tensor, positive: torch.Tensor, margin: float, gamma: float) -> torch.Tensor:
    """Row i's positive is positive[i]; every other row of ``positive`` is a negative."""
    sim = F.normalize(anchor, dim=1) @ F.normalize(positive, dim=1).t()
    off_diagonal = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    return circle_loss(sim.diagonal(), sim, margin, gamma, negative_mask=off_diagonal)


class SynerGraph(MGCN):
    """SynerGraph: MGCN-style views, top-K graphs, purifier circle loss.

    Every MGCN hyperparameter applies; the ones declared here change MGCN's default.

    Args:
        knn_k: neighbours per item in each modality kNN graph (the paper's top-K).
        cl_weight: weight of MGCN's InfoNCE; off by default (the circle loss replaces it).
        finetune_features: train the raw feature tables too; frozen by default.
        circle_weight: weight of the purifier circle loss; 0 switches it off.
        circle_on: where the circle loss applies: user_fused, purifier, side_content or both.
        circle_margin: circle-loss relaxation margin m, in [0, 1).
        circle_gamma: circle-loss scale factor gamma.
        circle_in_batch_negatives: with user_fused, the other in-batch fused items are negatives too.
    """

    def __init__(
        self,
        graph: Heterograph,
        features: dict[str, torch.Tensor],
        *,
        knn_k: int = 30,
        cl_weight: float = 0.0,
        finetune_features: bool = False,
        circle_weight: float = 0.001,
        circle_on: Literal["user_fused", "purifier", "side_content", "both"] = "user_fused",
        circle_margin: float = 0.25,
        circle_gamma: float = 64.0,
        circle_in_batch_negatives: bool = False,
        **kwargs,
    ):
        non_negative(circle_weight=circle_weight)
        require(0 <= circle_margin < 1, f"circle_margin: must be in [0, 1), got {circle_margin}")
        positive(circle_gamma=circle_gamma)
        super().__init__(graph, features, knn_k=knn_k, cl_weight=cl_weight, finetune_features=finetune_features,
                         **kwargs)
        self.circle_weight = circle_weight
        self.circle_on = circle_on
        self.circle_margin = circle_margin
        self.circle_gamma = circle_gamma
        self.circle_in_batch_negatives = circle_in_batch_negatives
        self._similarity_log: dict[str, list[float]] = {"s_p": [], "s_n": []}

    def auxiliary_losses(self, views: MultimodalViews, users, pos_items, neg_items):
        if self.circle_weight <= 0:
            return {}
        total = 0.0
        if self.circle_on in ("user_fused", "both"):
            total = total + self._user_fused(views, users, pos_items)
        if self.circle_on in ("purifier", "both"):
            total = total + sum(
                _in_batch_circle(views.purified[m][pos_items], views.content_item[pos_items], self.circle_margin,
                                 self.circle_gamma) for m in self.modalities) / len(self.modalities)
        if self.circle_on == "side_content":
            total = (_in_batch_circle(views.side_item[pos_items], views.content_item[pos_items], self.circle_margin,
                                      self.circle_gamma)
                     + _in_batch_circle(views.side_user[users], views.content_user[users], self.circle_margin,
                                        self.circle_gamma))
        return {"circle": self.circle_weight * total}

    def _user_fused(self, views: MultimodalViews, users, pos_items) -> torch.Tensor:
        anchor = F.normalize(views.user[users], dim=1)
        s_p = (anchor * F.normalize(views.item[pos_items], dim=1)).sum(1)
        s_n = torch.stack([(anchor * F.normalize(views.modal_item[m][pos_items], dim=1)).sum(1)
                           for m in self.modalities], dim=1)
        mask = None
        if self.circle_in_batch_negatives:
            fused = anchor @ F.normalize(views.item[pos_items], dim=1).t()
            s_n = torch.cat([s_n, fused], dim=1)
            own = torch.eye(len(users), dtype=torch.bool, device=fused.device)
            mask = torch.cat([torch.ones(len(users), len(self.modalities), dtype=torch.bool, device=fused.device),
                              ~own], dim=1)
        self._similarity_log["s_p"].append(float(s_p.detach().mean()))
        self._similarity_log["s_n"].append(float(s_n[:, : len(self.modalities)].detach().mean()))
        return circle_loss(s_p, s_n, self.circle_margin, self.circle_gamma, negative_mask=mask)

    def training_diagnostics(self) -> dict[str, float]:
        """Gate statistics plus the mean circle similarities since the last call."""
        out = super().training_diagnostics()
        for key, values in self._similarity_log.items():
            if values:
                out[f"circle_{key}"] = sum(values) / len(values)
            values.clear()
        return out
