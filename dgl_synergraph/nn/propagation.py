"""Heterogeneous graph convolution over the dataset heterograph, written with DGL built-ins.

Each relation src -> dst is propagated in the cheapest exact form:
- interaction relations (no edge weights): D_dst^-1/2 A D_src^-1/2 h computed as node-side
  scaling around an unweighted ``copy_u`` + ``sum`` (measured ~6x faster than ``u_mul_e`` on
  a 2-core CPU, see ``benchmarks/propagation.py``);
- weighted item-item relations (edge data ``w``, already normalised): ``u_mul_e`` + ``sum``.
Messages arriving at the same node type from several relations are summed, as DGL's
``HeteroGraphConv(aggregate="sum")`` does.
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


class HeteroPropagation(nn.Module):
    """One parameter-free propagation step over chosen relations of the heterograph."""

    def __init__(self, graph: dgl.DGLGraph, relations: list[tuple[str, str, str]]):
        super().__init__()
        self.relations = [graph.to_canonical_etype(r) for r in relations]
        self._graphs = {rel: dgl.edge_type_subgraph(graph, [rel]) for rel in self.relations}
        for ntype in graph.ntypes:
            if "norm" in graph.nodes[ntype].data:
                self.register_buffer(f"norm_{ntype}", graph.nodes[ntype].data["norm"].clone(), persistent=False)
        self.weighted = {}
        for rel in self.relations:
            if "w" in graph.edges[rel].data:
                self.register_buffer(f"w_{rel[1]}", graph.edges[rel].data["w"].clone(), persistent=False)
                self.weighted[rel] = f"w_{rel[1]}"

    def _apply(self, fn, *args, **kwargs):
        # .to(device) moves buffers; keep the DGL relation graphs on the same device.
        out = super()._apply(fn, *args, **kwargs)
        device = next(iter(self.buffers())).device
        for rel, g in self._graphs.items():
            if g.device != device:
                self._graphs[rel] = g.to(device)
        return out

    def relation(self, rel: tuple[str, str, str], h_src: torch.Tensor) -> torch.Tensor:
        """Messages along one relation into its destination nodes."""
        graph = self._graphs[rel]
        if rel in self.weighted:
            return weighted_sum(graph, h_src, getattr(self, self.weighted[rel]))
        src, _, dst = rel
        return normalized_sum(graph, h_src, getattr(self, f"norm_{src}"), getattr(self, f"norm_{dst}"))

    def forward(self, h: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for rel in self.relations:
            message = self.relation(rel, h[rel[0]])
            out[rel[2]] = out[rel[2]] + message if rel[2] in out else message
        return out


class LightGCNEncoder(nn.Module):
    """User-item encoder: L propagation steps over the interaction relations, layer-mean pooling.

    Shared by LightGCN and every multimodal model's user-item view.
    """

    def __init__(self, graph: dgl.DGLGraph, n_layers: int):
        super().__init__()
        if n_layers < 0:
            raise ValueError("n_layers must be >= 0")
        self.n_layers = n_layers
        self.step = HeteroPropagation(graph, [INTERACTED_BY, INTERACTS])

    def forward(self, h_user: torch.Tensor, h_item: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = {USER: h_user, ITEM: h_item}
        layers = [h]
        for _ in range(self.n_layers):
            h = self.step(h)
            layers.append(h)
        return torch.stack([x[USER] for x in layers]).mean(0), torch.stack([x[ITEM] for x in layers]).mean(0)

    def items_to_users(self, h_item: torch.Tensor) -> torch.Tensor:
        """R_hat h: each user's normalised sum of its training items (MGCN's user modality view)."""
        return self.step.relation(INTERACTED_BY, h_item)


class ItemGraphEncoder(nn.Module):
    """Item-item encoder: L propagation steps over one weighted item relation (last layer out)."""

    def __init__(self, graph: dgl.DGLGraph, relation: str, n_layers: int):
        super().__init__()
        self.n_layers = n_layers
        self.step = HeteroPropagation(graph, [(ITEM, relation, ITEM)])

    def forward(self, h_item: torch.Tensor) -> torch.Tensor:
        for _ in range(self.n_layers):
            h_item = self.step({ITEM: h_item})[ITEM]
        return h_item
