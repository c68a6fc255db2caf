"""One DGL heterograph per dataset: users, items, training interactions (both directions).

Node data ``norm`` holds d^-1/2 of each node's degree in the user-item graph, so the symmetric
normalisation D^-1/2 A D^-1/2 can be applied as node-side scaling around an unweighted sum
(the fast ``copy_u`` + ``sum`` form, see ``benchmarks/propagation.py``). Item-item relations
(modality kNN graphs, added by the multimodal models) carry their normalised weight in edge
data ``w``.
"""

from __future__ import annotations

import dgl
import numpy as np
import torch

USER, ITEM = "user", "item"
INTERACTS = (USER, "interacts", ITEM)
INTERACTED_BY = (ITEM, "interacted_by", USER)


def degree_norm(degrees: torch.Tensor) -> torch.Tensor:
    """d^-1/2 with isolated nodes mapped to 0 (they receive and send nothing)."""
    degrees = degrees.float()
    return torch.where(degrees > 0, degrees.clamp(min=1).pow(-0.5), torch.zeros_like(degrees))


def build_heterograph(
    n_users: int,
    n_items: int,
    train_pairs: np.ndarray,
    item_relations: dict[str, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
) -> dgl.DGLGraph:
    """Build the dataset heterograph from TRAINING pairs only.

    ``item_relations`` maps a relation name (e.g. ``knn_text``) to (src, dst, weight) item-id
    tensors; each becomes the relation ``('item', name, 'item')`` with edge data ``w``.
    """
    users = torch.as_tensor(train_pairs[:, 0], dtype=torch.int64)
    items = torch.as_tensor(train_pairs[:, 1], dtype=torch.int64)
    spec = {INTERACTS: (users, items), INTERACTED_BY: (items, users)}
    for name, (src, dst, _) in (item_relations or {}).items():
        spec[(ITEM, name, ITEM)] = (src.long(), dst.long())
    graph = dgl.heterograph(spec, num_nodes_dict={USER: n_users, ITEM: n_items})
    graph.nodes[USER].data["norm"] = degree_norm(graph.out_degrees(etype=INTERACTS))[:, None]
    graph.nodes[ITEM].data["norm"] = degree_norm(graph.out_degrees(etype=INTERACTED_BY))[:, None]
    for name, (_, _, weight) in (item_relations or {}).items():
        graph.edges[(ITEM, name, ITEM)].data["w"] = weight.float()
    return graph
