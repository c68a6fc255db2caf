"""Every model's graph recipe: what the registry builds from a dataset before calling a model.

A recipe takes the dataset, the device and the model hyperparameters that shape its graphs (by
the names the model's constructor declares them under, where their defaults live), and returns
the keyword inputs of the model's constructor: ``graph`` (the dataset heterograph, built once
per run, with the item-item relations the model propagates over) and, for the multimodal models,
``features`` (the chosen modalities' feature tables).
"""

from __future__ import annotations

from typing import Any

import torch

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.errors import ConfigError, require
from dgl_synergraph.graphs.cooccurrence import cached_cooccurrence_graph
from dgl_synergraph.graphs.hetero import Heterograph, build_heterograph
from dgl_synergraph.graphs.knn import ItemGraph, cached_knn_graph, merge_graphs, normalise_graph

MIXED_RELATION = "knn_mm"  # FREEDOM's one mixed modality graph


def knn_relation(modality: str) -> str:
    """The relation of one modality's kNN graph (MGCN, SynerGraph)."""
    return f"knn_{modality}"


def semantic_relation(modality: str) -> str:
    """The relation of one modality's collaborative-infused graph (SIGER)."""
    return f"semantic_{modality}"


def select_modalities(dataset: Dataset, spec: str) -> list[str]:
    """``"all"`` or a comma list such as ``"text"`` / ``"image,text"`` -> checked names."""
    available = dataset.modalities
    wanted = available if spec in ("all", "both") else [m.strip() for m in spec.split(",") if m.strip()]
    missing = [m for m in wanted if m not in available]
    if missing or not wanted:
        raise ConfigError(f"modalities: {spec!r} is not available in dataset {dataset.name!r} "
                          f"(it has: {', '.join(available) or 'no feature files'})")
    return wanted


def _features(dataset: Dataset, modalities: list[str]) -> dict[str, torch.Tensor]:
    return {m: torch.as_tensor(dataset.features[m]) for m in modalities}


def _knn(dataset: Dataset, modalities: list[str], k: int, weighting: str, self_loop: bool, device: torch.device,
         normalise: bool = True) -> dict[str, ItemGraph]:
    # A K no item can have is a mistake in the settings, not something to round down silently.
    most = dataset.n_items if self_loop else dataset.n_items - 1
    require(1 <= k <= most, f"knn_k: must be between 1 and {most} (the {'' if self_loop else 'other '}items of "
                            f"dataset {dataset.name!r}), got {k}")
    return {m: cached_knn_graph(dataset.features[m], k, weighting, self_loop, device=device, normalise=normalise)
            for m in modalities}


def _heterograph(dataset: Dataset, item_graphs: dict[str, ItemGraph] | None = None) -> Heterograph:
    relations = {name: g.as_relation() for name, g in (item_graphs or {}).items()}
    return build_heterograph(dataset.n_users, dataset.n_items, dataset.train, relations)


def interaction_graph(dataset: Dataset, *, device: torch.device) -> dict[str, Any]:
    """Users and items with the training interactions (MostPop, BPR-MF, LightGCN)."""
    return {"graph": _heterograph(dataset)}


def modality_knn(dataset: Dataset, *, device: torch.device, modalities: str, knn_k: int, knn_weighting: str,
                 knn_self_loop: bool) -> dict[str, Any]:
    """One normalised top-K kNN relation per modality (MGCN, SynerGraph)."""
    names = select_modalities(dataset, modalities)
    graphs = _knn(dataset, names, knn_k, knn_weighting, knn_self_loop, device)
    return {"graph": _heterograph(dataset, {knn_relation(m): g for m, g in graphs.items()}),
            "features": _features(dataset, names)}


def mixing_weights(modalities: list[str], image_weight: float) -> dict[str, float]:
    """FREEDOM's share of each modality graph: ``image_weight`` for the image, the rest spread
    evenly over the others (one modality: all of it)."""
    if len(modalities) == 1:
        return {modalities[0]: 1.0}
    others = [m for m in modalities if m != "image"]
    rest = (1 - image_weight) if "image" in modalities else 1.0
    return {m: image_weight if m == "image" else rest / len(others) for m in modalities}


def freedom_mixed(dataset: Dataset, *, device: torch.device, modalities: str, knn_k: int,
                  image_weight: float) -> dict[str, Any]:
    """FREEDOM's frozen graph: binary kNN graphs mixed as w * image + (1 - w) spread over the
    other modalities."""
    require(0 <= image_weight <= 1, f"image_weight: must be in [0, 1], got {image_weight}")
    names = select_modalities(dataset, modalities)
    graphs = _knn(dataset, names, knn_k, "binary", True, device)
    if len(graphs) == 1:
        mixed = next(iter(graphs.values()))
    else:
        mixed = merge_graphs([(weight, graphs[m]) for m, weight in mixing_weights(names, image_weight).items()])
    return {"graph": _heterograph(dataset, {MIXED_RELATION: mixed}), "features": _features(dataset, names)}


def siger_infused(dataset: Dataset, *, device: torch.device, modalities: str, knn_k: int, knn_weighting: str,
                  cooc_k: int, cooc_cosine: bool, beta: float, infusion: str) -> dict[str, Any]:
    """SIGER's semantic graphs: each modality's kNN graph infused with the training
    co-occurrence graph, (1 - beta) S^m + beta S^c. ``mix`` mixes normalised graphs;
    ``add_then_normalise`` mixes raw weights and normalises the sum."""
    require(0 <= beta <= 1, f"beta: must be in [0, 1], got {beta}")
    names = select_modalities(dataset, modalities)
    normalised = infusion == "mix"
    semantic = _knn(dataset, names, knn_k, knn_weighting, True, device, normalise=normalised)
    collaborative = cached_cooccurrence_graph(dataset.train, dataset.n_users, dataset.n_items, cooc_k, cooc_cosine,
                                              normalise=normalised)
    graphs = {}
    for m in names:
        mixed = merge_graphs([(1 - beta, semantic[m]), (beta, collaborative)]) if beta > 0 else semantic[m]
        graphs[semantic_relation(m)] = mixed if normalised else normalise_graph(mixed)
    return {"graph": _heterograph(dataset, graphs), "features": _features(dataset, names)}
