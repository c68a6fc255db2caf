"""SynerGraph: graph-based multimodal recommendation on DGL and PyTorch."""

import os as _os

# DGL picks its backend at import time; this library only supports PyTorch.
_os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"

from dgl_synergraph.errors import ConfigError, DataError, RunError, SynergraphError  # noqa: E402

__all__ = ["ConfigError", "DataError", "RunError", "SynergraphError", "__version__", "build_config", "load_run",
           "resume", "train"]


def __getattr__(name: str):
    # Imported lazily: ``import dgl_synergraph`` stays cheap for the CLI's --help.
    if name in ("build_config", "load_run", "resume", "train"):
        from dgl_synergraph import api

        return getattr(api, name)
    raise AttributeError(f"module 'dgl_synergraph' has no attribute {name!r}")
