"""Message passing written with DGL built-ins, no Python loops over nodes or edges.

``normalized_sum`` is the fast form of one symmetric-normalised propagation step: scale the
source features by d_src^-1/2, sum them with ``copy_u`` + ``sum`` and scale the result by
d_dst^-1/2. It equals multiplying by D^-1/2 A D^-1/2 but avoids a per-edge multiply
(measured ~6x faster than ``u_mul_e`` on a 2-core CPU, see ``benchmarks/propagation.py``).
"""

from __future__ import annotations

import dgl
import dgl.ops
import torch
from torch import nn

from dgl_synergraph.graphs.hetero import INTERACTED_BY, INTERACTS, ITEM, USER


def normalized_sum(relation: dgl.DGLGraph, h_src: torch.Tensor, norm_src: torch.Tensor, norm_dst: torch.Tensor) -> torch.Tensor:
    """D_dst^-1/2 A D_src^-1/2 h over one relation graph (one edge type)."""
    return dgl.ops.copy_u_sum(relation, h_src * norm_src) * norm_dst


def weighted_sum(relation: dgl.DGLGraph, h_src: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """sum_{src->dst} w_e h_src for a relation whose (already normalised) weights are per edge."""
    return dgl.ops.u_mul_e_sum(relation, h_src, weight)


class LightGCNEncoder(nn.Module):
    """User-item encoder: L rounds of symmetric-normalised propagation, layer-mean pooling.

    Runs on the ``interacts`` / ``interacted_by`` relations of the dataset heterograph and is
    shared by LightGCN and the multimodal models (their user-item view).
    """

    def __init__(self, graph: dgl.DGLGraph, n_layers: int):
        super().__init__()
        if n_layers < 0:
            raise ValueError("n_layers must be >= 0")
        self.n_layers = n_layers
        # Single-relation views are built once; slicing the heterograph per call costs time.
        self.to_items = dgl.edge_type_subgraph(graph, [INTERACTS])
        self.to_users = dgl.edge_type_subgraph(graph, [INTERACTED_BY])
        self.register_buffer("user_norm", graph.nodes[USER].data["norm"].clone(), persistent=False)
        self.register_buffer("item_norm", graph.nodes[ITEM].data["norm"].clone(), persistent=False)

    def _apply(self, fn, *args, **kwargs):
        # Keep the DGL graphs on the module's device when .to(device) is called.
        out = super()._apply(fn, *args, **kwargs)
        device = self.user_norm.device
        if self.to_items.device != device:
            self.to_items = self.to_items.to(device)
            self.to_users = self.to_users.to(device)
        return out

    def propagate(self, h_user: torch.Tensor, h_item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One layer: users gather from items and items from users."""
        new_user = normalized_sum(self.to_users, h_item, self.item_norm, self.user_norm)
        new_item = normalized_sum(self.to_items, h_user, self.user_norm, self.item_norm)
        return new_user, new_item

    def forward(self, h_user: torch.Tensor, h_item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        users, items = [h_user], [h_item]
        for _ in range(self.n_layers):
            h_user, h_item = self.propagate(h_user, h_item)
            users.append(h_user)
            items.append(h_item)
        return torch.stack(users).mean(0), torch.stack(items).mean(0)
