"""The one model registry: name -> builder with typed, defaulted hyperparameters.

A builder takes a :class:`ModelContext` (what every model may need from the dataset) plus its
own keyword-only hyperparameters; their defaults and types are read from its signature, so the
CLI and config validation learn about a new model from one registry line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import dgl
import torch

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.models.base import Recommender
from dgl_synergraph.models.bpr import BPRMF
from dgl_synergraph.models.lightgcn import LightGCN
from dgl_synergraph.models.mostpop import MostPop


@dataclass
class ModelContext:
    dataset: Dataset
    graph: dgl.DGLGraph
    embedding_dim: int
    reg_weight: float
    device: torch.device


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., Recommender]
    description: str

    @property
    def defaults(self) -> dict[str, Any]:
        params = inspect.signature(self.build).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _build_mostpop(ctx: ModelContext) -> Recommender:
    return MostPop(ctx.dataset.n_users, torch.as_tensor(ctx.dataset.item_popularity()))


def _build_bpr(ctx: ModelContext) -> Recommender:
    return BPRMF(ctx.dataset.n_users, ctx.dataset.n_items, ctx.embedding_dim, ctx.reg_weight)


def _build_lightgcn(ctx: ModelContext, *, n_layers: int = 3) -> Recommender:
    return LightGCN(ctx.graph, ctx.embedding_dim, n_layers, ctx.reg_weight)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry("mostpop", _build_mostpop, "most popular training items for everyone"),
        ModelEntry("bpr", _build_bpr, "matrix factorisation with BPR loss"),
        ModelEntry("lightgcn", _build_lightgcn, "LightGCN on the user-item graph"),
    ]
}


def get_model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"--model: unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name]


def resolve_model_params(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """Merge ``given`` into the model's defaults, checking names and types."""
    defaults = get_model_entry(name).defaults
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = ", ".join(sorted(defaults)) or "none"
        raise ConfigError(f"model {name!r} has no setting {unknown[0]!r} (its settings: {known})")
    resolved = dict(defaults)
    for key, value in given.items():
        resolved[key] = _coerce(name, key, value, defaults[key])
    return resolved


def _coerce(model: str, key: str, value: Any, default: Any) -> Any:
    expected = type(default)
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(f"{model}.{key}: expected {expected.__name__}, got {value!r}")
    return value


def build_model(name: str, ctx: ModelContext, params: dict[str, Any]) -> Recommender:
    entry = get_model_entry(name)
    model = entry.build(ctx, **resolve_model_params(name, params))
    return model.to(ctx.device)
