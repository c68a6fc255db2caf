"""Neural building blocks shared by every model."""

from dgl_synergraph.nn.propagation import (
    HeteroPropagation,
    ItemGraphEncoder,
    LightGCNEncoder,
    WeightedAdjacency,
    normalized_sum,
)

__all__ = ["HeteroPropagation", "ItemGraphEncoder", "LightGCNEncoder", "WeightedAdjacency", "normalized_sum"]
