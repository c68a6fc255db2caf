"""Neural building blocks shared by every model."""

from dgl_synergraph.nn.propagation import LightGCNEncoder, normalized_sum, weighted_sum

__all__ = ["LightGCNEncoder", "normalized_sum", "weighted_sum"]
