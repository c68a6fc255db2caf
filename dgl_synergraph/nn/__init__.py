"""Neural building blocks shared by every model."""

from dgl_synergraph.nn.propagation import (
    HeteroPropagation,
    ItemGraphEncoder,
    LightGCNEncoder,
    normalized_sum,
    weighted_sum,
)

__all__ = ["HeteroPropagation", "ItemGraphEncoder", "LightGCNEncoder", "normalized_sum", "weighted_sum"]
