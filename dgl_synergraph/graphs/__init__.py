"""Graph construction: the user/item heterograph and its normalisation."""

from dgl_synergraph.graphs.hetero import (
    INTERACTED_BY,
    INTERACTS,
    ITEM,
    USER,
    build_heterograph,
)

__all__ = ["INTERACTED_BY", "INTERACTS", "ITEM", "USER", "build_heterograph"]
