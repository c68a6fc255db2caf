"""Models and the registry that builds them by name."""

from dgl_synergraph.models.base import Recommender
from dgl_synergraph.models.registry import MODELS, ModelContext, build_model, get_model_entry, resolve_model_params

__all__ = ["MODELS", "ModelContext", "Recommender", "build_model", "get_model_entry", "resolve_model_params"]
