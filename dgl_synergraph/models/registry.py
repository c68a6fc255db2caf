"""The one model registry: name -> builder with typed, defaulted hyperparameters.

A builder takes a :class:`ModelContext` (what every model may need from the dataset) plus its
own keyword-only hyperparameters; their defaults and types are read from its signature, so the
CLI and config validation learn about a new model from one registry line.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import dgl
import torch

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.models.base import Recommender
from dgl_synergraph.models.bpr import BPRMF
from dgl_synergraph.models.lightgcn import LightGCN
from dgl_synergraph.models.freedom import FREEDOM, MIXED_RELATION
from dgl_synergraph.models.mgcn import MGCN, knn_relation
from dgl_synergraph.models.mostpop import MostPop
from dgl_synergraph.models.siger import SEMANTIC_INPUTS, SIGER, semantic_relation
from dgl_synergraph.models.synergraph import CIRCLE_PLACEMENTS, SynerGraph
from dgl_synergraph.graphs.cooccurrence import cached_cooccurrence_graph
from dgl_synergraph.graphs.knn import normalise_graph
from dgl_synergraph.graphs.hetero import build_heterograph
from dgl_synergraph.graphs.knn import cached_knn_graph, merge_graphs


@dataclass
class ModelContext:
    dataset: Dataset
    graph: dgl.DGLGraph
    embedding_dim: int
    reg_weight: float
    device: torch.device

    def modalities(self, spec: str) -> list[str]:
        """``"all"`` or a comma list such as ``"text"`` / ``"image,text"`` -> checked names."""
        available = self.dataset.modalities
        wanted = available if spec in ("all", "both") else [m.strip() for m in spec.split(",") if m.strip()]
        missing = [m for m in wanted if m not in available]
        if missing or not wanted:
            raise ConfigError(f"modalities: {spec!r} is not available in dataset {self.dataset.name!r} "
                              f"(it has: {', '.join(available) or 'no feature files'})")
        return wanted

    def features(self, modalities: list[str]) -> dict[str, torch.Tensor]:
        return {m: torch.as_tensor(self.dataset.features[m]) for m in modalities}

    def with_item_relations(self, graphs: dict) -> dgl.DGLGraph:
        """The dataset heterograph plus item-item relations ``{name: ItemGraph}``."""
        d = self.dataset
        return build_heterograph(d.n_users, d.n_items, d.train, {k: g.as_relation() for k, g in graphs.items()})

    def knn_graphs(self, modalities: list[str], k: int, weighting: str, self_loop: bool,
                   normalise: bool = True) -> dict:
        require(k > 0, f"knn_k: must be positive, got {k}")
        require(weighting in ("similarity", "binary"), f"knn_weighting: expected similarity or binary, got {weighting!r}")
        return {m: cached_knn_graph(self.dataset.features[m], k, weighting, self_loop, device=self.device,
                                    normalise=normalise) for m in modalities}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable[..., Recommender]
    description: str
    # Run settings this model changes by default (e.g. MGCN's learning-rate decay).
    run_defaults: dict[str, Any] = field(default_factory=dict)
    # Hyperparameter defaults for particular datasets (e.g. SynerGraph's top-K per dataset).
    dataset_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def defaults(self) -> dict[str, Any]:
        params = inspect.signature(self.build).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _build_mostpop(ctx: ModelContext) -> Recommender:
    return MostPop(ctx.dataset.n_users, torch.as_tensor(ctx.dataset.item_popularity()))


def _build_bpr(ctx: ModelContext) -> Recommender:
    return BPRMF(ctx.dataset.n_users, ctx.dataset.n_items, ctx.embedding_dim, ctx.reg_weight)


def _check_layers(**layers: int) -> None:
    for name, value in layers.items():
        require(value >= 0, f"{name}: must be >= 0, got {value}")


def _build_lightgcn(ctx: ModelContext, *, n_layers: int = 3) -> Recommender:
    _check_layers(n_layers=n_layers)
    return LightGCN(ctx.graph, ctx.embedding_dim, n_layers, ctx.reg_weight)


def _mgcn_family_graph(ctx: ModelContext, modalities: str, knn_k: int, knn_weighting: str, knn_self_loop: bool,
                       cl_temperature: float) -> tuple[list[str], dgl.DGLGraph]:
    """Checks shared by MGCN and SynerGraph, and their heterograph with one kNN relation per modality."""
    require(cl_temperature > 0, "cl_temperature: must be > 0")
    names = ctx.modalities(modalities)
    graphs = ctx.knn_graphs(names, knn_k, knn_weighting, knn_self_loop)
    return names, ctx.with_item_relations({knn_relation(m): g for m, g in graphs.items()})


def _build_mgcn(ctx: ModelContext, *, modalities: str = "all", knn_k: int = 10, knn_weighting: str = "similarity",
                knn_self_loop: bool = True, n_ui_layers: int = 2, n_ii_layers: int = 1, cl_weight: float = 0.01,
                cl_temperature: float = 0.2, purifier: bool = True, finetune_features: bool = True) -> Recommender:
    _check_layers(n_ui_layers=n_ui_layers, n_ii_layers=n_ii_layers)
    names, graph = _mgcn_family_graph(ctx, modalities, knn_k, knn_weighting, knn_self_loop, cl_temperature)
    return MGCN(graph, ctx.features(names), ctx.embedding_dim, ctx.reg_weight, n_ui_layers, n_ii_layers, cl_weight,
                cl_temperature, purifier, finetune_features)


def _build_synergraph(ctx: ModelContext, *, modalities: str = "all", knn_k: int = 30,
                      knn_weighting: str = "similarity", knn_self_loop: bool = True, n_ui_layers: int = 2,
                      n_ii_layers: int = 1, purifier: bool = True, circle_weight: float = 0.001,
                      circle_on: str = "user_fused", circle_margin: float = 0.25, circle_gamma: float = 64.0,
                      circle_in_batch_negatives: bool = False, cl_weight: float = 0.0, cl_temperature: float = 0.2,
                      finetune_features: bool = False) -> Recommender:
    _check_layers(n_ui_layers=n_ui_layers, n_ii_layers=n_ii_layers)
    require(circle_on in CIRCLE_PLACEMENTS, f"circle_on: expected one of {', '.join(CIRCLE_PLACEMENTS)}, got {circle_on!r}")
    require(circle_weight >= 0, "circle_weight: must be >= 0 (0 switches the circle loss off)")
    require(0 <= circle_margin < 1, "circle_margin: must be in [0, 1)")
    require(circle_gamma > 0, "circle_gamma: must be > 0")
    names, graph = _mgcn_family_graph(ctx, modalities, knn_k, knn_weighting, knn_self_loop, cl_temperature)
    return SynerGraph(graph, ctx.features(names), ctx.embedding_dim, ctx.reg_weight, n_ui_layers, n_ii_layers,
                      cl_weight, cl_temperature, purifier, finetune_features, circle_weight=circle_weight,
                      circle_on=circle_on, circle_margin=circle_margin, circle_gamma=circle_gamma,
                      circle_in_batch_negatives=circle_in_batch_negatives)


def _build_freedom(ctx: ModelContext, *, modalities: str = "all", knn_k: int = 10, image_weight: float = 0.1,
                   n_ui_layers: int = 2, n_mm_layers: int = 1, dropout: float = 0.8,
                   finetune_features: bool = True) -> Recommender:
    _check_layers(n_ui_layers=n_ui_layers, n_mm_layers=n_mm_layers)
    require(0 <= dropout < 1, f"dropout: must be in [0, 1), got {dropout}")
    require(0 <= image_weight <= 1, f"image_weight: must be in [0, 1], got {image_weight}")
    names = ctx.modalities(modalities)
    graphs = ctx.knn_graphs(names, knn_k, "binary", True)
    if len(graphs) == 1:
        mixed = next(iter(graphs.values()))
    else:
        # FREEDOM mixes the image graph with weight w and spreads 1 - w over the other modalities.
        others = [m for m in names if m != "image"]
        parts = [(image_weight if m == "image" else (1 - image_weight if "image" in names else 1.0) / len(others),
                  graphs[m]) for m in names]
        mixed = merge_graphs(parts)
    graph = ctx.with_item_relations({MIXED_RELATION: mixed})
    # FREEDOM's reg_weight scales its modality BPR terms (MMRec FREEDOM.yaml).
    return FREEDOM(graph, ctx.features(names), ctx.dataset.train, ctx.embedding_dim, ctx.reg_weight, n_ui_layers,
                   n_mm_layers, dropout, finetune_features)


def _build_siger(ctx: ModelContext, *, modalities: str = "all", knn_k: int = 10, knn_weighting: str = "similarity",
                 cooc_k: int = 10, cooc_cosine: bool = True, beta: float = 0.5, infusion: str = "mix",
                 n_ui_layers: int = 2, n_sem_layers: int = 1, eps: float = 0.1, perturb_layers: str = "all",
                 perturb_inverse: bool = False, cl_weight: float = 0.01, cl_temperature: float = 0.2,
                 anchor_weight: float = 0.01, anchor_temperature: float = 0.2, anchor_multi_positive: bool = False,
                 align_weight: float = 0.01, align_temperature: float = 0.2,
                 semantic_input: str = "purified") -> Recommender:
    _check_layers(n_ui_layers=n_ui_layers, n_sem_layers=n_sem_layers)
    require(0 <= beta <= 1, f"beta: must be in [0, 1], got {beta}")
    require(infusion in ("mix", "add_then_normalise"), f"infusion: expected mix or add_then_normalise, got {infusion!r}")
    require(perturb_layers in ("all", "last"), f"perturb_layers: expected all or last, got {perturb_layers!r}")
    require(eps >= 0, "eps: must be >= 0")
    for name, value in (("cl_temperature", cl_temperature), ("anchor_temperature", anchor_temperature),
                        ("align_temperature", align_temperature)):
        require(value > 0, f"{name}: must be > 0")
    require(cooc_k > 0, f"cooc_k: must be positive, got {cooc_k}")
    require(semantic_input in SEMANTIC_INPUTS,
            f"semantic_input: expected one of {', '.join(SEMANTIC_INPUTS)}, got {semantic_input!r}")
    names = ctx.modalities(modalities)
    d = ctx.dataset
    normalised = infusion == "mix"  # mix: (1 - beta) S^m + beta S^c of normalised graphs
    semantic = ctx.knn_graphs(names, knn_k, knn_weighting, True, normalise=normalised)
    collaborative = cached_cooccurrence_graph(d.train, d.n_users, d.n_items, cooc_k, cooc_cosine, normalise=normalised)
    graphs = {}
    for m in names:
        mixed = merge_graphs([(1 - beta, semantic[m]), (beta, collaborative)]) if beta > 0 else semantic[m]
        graphs[semantic_relation(m)] = mixed if normalised else normalise_graph(mixed)
    graph = ctx.with_item_relations(graphs)
    return SIGER(graph, ctx.features(names), ctx.embedding_dim, ctx.reg_weight, n_ui_layers, n_sem_layers, eps,
                 perturb_layers, perturb_inverse, cl_weight, cl_temperature, anchor_weight, anchor_temperature,
                 anchor_multi_positive, align_weight, align_temperature, semantic_input)


MODELS: dict[str, ModelEntry] = {
    entry.name: entry
    for entry in [
        ModelEntry("mostpop", _build_mostpop, "most popular training items for everyone"),
        ModelEntry("bpr", _build_bpr, "matrix factorisation with BPR loss"),
        ModelEntry("lightgcn", _build_lightgcn, "LightGCN on the user-item graph"),
        ModelEntry("freedom", _build_freedom, "FREEDOM: frozen mixed kNN item graph + pruned LightGCN"),
        ModelEntry("mgcn", _build_mgcn, "MGCN: purifier, item-item + user-item views, fuser, InfoNCE",
                   run_defaults={"lr_decay": 0.96}),
        ModelEntry("synergraph", _build_synergraph, "SynerGraph: MGCN-style views, top-K graphs, purifier circle loss",
                   run_defaults={"lr_decay": 0.96},
                   dataset_defaults={"baby": {"knn_k": 35}, "sports": {"knn_k": 30}, "clothing": {"knn_k": 30}}),
        ModelEntry("siger", _build_siger, "SIGER: collaborative-infused semantic graphs, perturbation CL, dual alignment"),
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
        import difflib

        from dgl_synergraph.config import RunConfig  # local: config imports this module

        known = ", ".join(sorted(defaults)) or "none"
        close = difflib.get_close_matches(unknown[0], list(defaults) + list(RunConfig.model_fields), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"model {name!r} has no setting {unknown[0]!r} (its settings: {known}){hint}")
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
