"""Models and the registry that builds them by name.

Model classes are imported from their own modules (``dgl_synergraph.models.mgcn``); this package
only re-exports the registry, which imports no torch until a model is built.
"""

from dgl_synergraph.models.registry import MODELS, build_model, get_model_entry, resolve_model_params

__all__ = ["MODELS", "build_model", "get_model_entry", "resolve_model_params"]
