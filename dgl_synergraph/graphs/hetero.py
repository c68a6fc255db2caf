"""One heterograph per dataset: users, items, training interactions (both directions).

Node data ``norm`` holds d^-1/2 of each node's degree in the user-item graph, so the symmetric
normalisation D^-1/2 A D^-1/2 can be applied as node-side scaling around an unweighted sum
(the fast ``copy_u`` + ``sum`` form, see ``benchmarks/propagation.py``). Item-item relations
(modality kNN graphs, added by the multimodal models) carry their normalised weight in edge
data ``w``.

The graph is a DGL heterograph wherever DGL can be imported. Where it cannot (DGL's wheels are
CPU builds tied to one torch release, so a current CUDA torch usually has none), it is an
:class:`EdgeListHeterograph`: the few parts of DGL's heterograph interface the library reads,
over the same edge tensors, which the torch propagation backend runs on.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import TYPE_CHECKING, Union

import numpy as np
import torch

if TYPE_CHECKING:
    import dgl

log = logging.getLogger(__name__)

USER, ITEM = "user", "item"
INTERACTS = (USER, "interacts", ITEM)
INTERACTED_BY = (ITEM, "interacted_by", USER)

Relation = tuple[str, str, str]


@lru_cache(maxsize=None)
def import_dgl():
    """DGL, or None where it cannot be imported (:func:`dgl_missing_reason` says why)."""
    try:
        import dgl
    except Exception as error:  # noqa: BLE001 - a DGL built for another torch fails in assorted ways
        _missing.append(f"{type(error).__name__}: {error}")
        log.debug("DGL is not usable (%s); graphs are edge lists for the torch backend", _missing[-1])
        return None
    return dgl


_missing: list[str] = []


def dgl_missing_reason() -> str:
    """Why DGL could not be imported ("" where it can)."""
    return "" if import_dgl() else _missing[-1]


def degree_norm(degrees: torch.Tensor) -> torch.Tensor:
    """d^-1/2 with isolated nodes mapped to 0 (they receive and send nothing)."""
    degrees = degrees.float()
    return torch.where(degrees > 0, degrees.clamp(min=1).pow(-0.5), torch.zeros_like(degrees))


class _Frame:
    def __init__(self):
        self.data: dict[str, torch.Tensor] = {}


class _EdgeView:
    """``graph.edges(etype=...)`` gives (src, dst); ``graph.edges[etype].data`` the edge data, as in DGL."""

    def __init__(self, graph: "EdgeListHeterograph"):
        self._graph = graph

    def __call__(self, etype: Relation | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self._graph.edge_lists[self._graph.to_canonical_etype(etype)]

    def __getitem__(self, etype: Relation | str) -> _Frame:
        return self._graph.edge_frames[self._graph.to_canonical_etype(etype)]


class EdgeListHeterograph:
    """The heterograph as edge tensors, for where DGL is absent: ``num_nodes``, ``edges``,
    ``in_degrees``/``out_degrees``, ``nodes[t].data`` and ``edges[r].data`` behave as DGL's do."""

    def __init__(self, edges: dict[Relation, tuple[torch.Tensor, torch.Tensor]], num_nodes: dict[str, int]):
        self.ntypes = sorted(num_nodes)
        self.canonical_etypes = list(edges)
        self._num_nodes = dict(num_nodes)
        self.edge_lists = {rel: (src.long(), dst.long()) for rel, (src, dst) in edges.items()}
        self.nodes = {ntype: _Frame() for ntype in self.ntypes}
        self.edge_frames = {rel: _Frame() for rel in self.canonical_etypes}
        self.edges = _EdgeView(self)

    def to_canonical_etype(self, etype: Relation | str | None) -> Relation:
        if etype is None and len(self.canonical_etypes) == 1:
            return self.canonical_etypes[0]
        if isinstance(etype, tuple):
            if etype in self.edge_lists:
                return etype
        else:
            matches = [rel for rel in self.canonical_etypes if rel[1] == etype]
            if len(matches) == 1:
                return matches[0]
        raise KeyError(f"relation {etype!r} is not in the graph (it has {self.canonical_etypes})")

    def num_nodes(self, ntype: str) -> int:
        return self._num_nodes[ntype]

    def num_edges(self, etype: Relation | str | None = None) -> int:
        return int(self.edges(etype)[0].numel())

    def out_degrees(self, etype: Relation | str | None = None) -> torch.Tensor:
        rel = self.to_canonical_etype(etype)
        return torch.bincount(self.edge_lists[rel][0], minlength=self._num_nodes[rel[0]])

    def in_degrees(self, etype: Relation | str | None = None) -> torch.Tensor:
        rel = self.to_canonical_etype(etype)
        return torch.bincount(self.edge_lists[rel][1], minlength=self._num_nodes[rel[2]])


Heterograph = Union["dgl.DGLGraph", EdgeListHeterograph]


def build_heterograph(
    n_users: int,
    n_items: int,
    train_pairs: np.ndarray | torch.Tensor,
    item_relations: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
) -> Heterograph:
    """Build the dataset heterograph from TRAINING pairs only.

    ``item_relations`` maps a relation name (e.g. ``knn_text``) to (src, dst, weight) item-id
    tensors; each becomes the relation ``('item', name, 'item')`` with edge data ``w``.
    """
    users = torch.as_tensor(train_pairs[:, 0], dtype=torch.int64)
    items = torch.as_tensor(train_pairs[:, 1], dtype=torch.int64)
    spec = {INTERACTS: (users, items), INTERACTED_BY: (items, users)}
    for name, (src, dst, _) in (item_relations or {}).items():
        spec[(ITEM, name, ITEM)] = (src.long(), dst.long())
    num_nodes = {USER: n_users, ITEM: n_items}
    dgl = import_dgl()
    graph = dgl.heterograph(spec, num_nodes_dict=num_nodes) if dgl else EdgeListHeterograph(spec, num_nodes)
    graph.nodes[USER].data["norm"] = degree_norm(graph.out_degrees(etype=INTERACTS))[:, None]
    graph.nodes[ITEM].data["norm"] = degree_norm(graph.out_degrees(etype=INTERACTED_BY))[:, None]
    for name, (_, _, weight) in (item_relations or {}).items():
        graph.edges[(ITEM, name, ITEM)].data["w"] = weight.float()
    return graph
