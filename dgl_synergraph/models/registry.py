"""The one model registry: a name -> the model class, the graph recipe it asks for, and the
per-dataset defaults table.

Hyperparameters (name, type, default, doc) are read from each class's constructor (see
``hyperparams.py``); nothing here declares a default of its own. Classes and recipes are named by
import path and imported only when a model is built, so listing models never loads torch.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dgl_synergraph.errors import ConfigError
from dgl_synergraph.models.hyperparams import Hyperparameter, class_summary, read_hyperparameters

if TYPE_CHECKING:
    from dgl_synergraph.models.base import Recommender

RECIPES = "dgl_synergraph.graphs.recipes"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    model: str  # "module:Class"
    graphs: str  # a function of graphs/recipes.py
    # Run settings this model changes (e.g. MGCN's learning-rate decay).
    run_defaults: dict[str, Any] = field(default_factory=dict)
    # Hyperparameter values for particular datasets: the configurations validation selected
    # there (docs/results.md, "Defaults per dataset"; a test holds the two equal).
    dataset_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def hyperparameters(self) -> dict[str, Hyperparameter]:
        return read_hyperparameters(*self.model.split(":"))

    @property
    def defaults(self) -> dict[str, Any]:
        return {name: hp.default for name, hp in self.hyperparameters.items()}

    @property
    def description(self) -> str:
        return class_summary(*self.model.split(":"))

    def model_class(self) -> type:
        module, name = self.model.split(":")
        return getattr(importlib.import_module(module), name)

    def recipe(self):
        return getattr(importlib.import_module(RECIPES), self.graphs)


MODELS: dict[str, ModelEntry] = {entry.name: entry for entry in [
    ModelEntry("mostpop", "dgl_synergraph.models.mostpop:MostPop", "interaction_graph"),
    ModelEntry("bpr", "dgl_synergraph.models.bpr:BPRMF", "interaction_graph"),
    ModelEntry("lightgcn", "dgl_synergraph.models.lightgcn:LightGCN", "interaction_graph"),
    # precision "auto" (as MGCN): Baby, three seeds, fp32 and bf16 test R@20 0.0915 ± 0.0013 both,
    # every seed equal at four decimals (docs/results.md, "Session 12")
    ModelEntry("freedom", "dgl_synergraph.models.freedom:FREEDOM", "freedom_mixed",
               run_defaults={"precision": "auto"}),
    # precision "auto": bf16 where the device multiplies it natively. Baby, three seeds, fp32 and
    # bf16 test R@20 0.0917 and 0.0919 (std 0.0007 each; docs/results.md, "bf16 by default")
    ModelEntry("mgcn", "dgl_synergraph.models.mgcn:MGCN", "modality_knn",
               run_defaults={"lr_decay": 0.96, "precision": "auto"}),
    ModelEntry("synergraph", "dgl_synergraph.models.synergraph:SynerGraph", "modality_knn",
               run_defaults={"lr_decay": 0.96},
               # Baby: text only since session 13 (the modality grid); Sports and Clothing: the InfoNCE
               # since sessions 17 and 18; Clothing: the bounded gate since session 19; Sports: K=20
               # since session 21 (docs/results.md "Defaults per dataset")
               dataset_defaults={"baby": {"knn_k": 10, "cl_weight": 0.01, "modalities": "text"},
                                 "sports": {"knn_k": 20, "cl_weight": 0.01},
                                 "clothing": {"knn_k": 10, "cl_weight": 0.01, "gate_norm": True,
                                              "gate_decay": 0.001}}),
    # precision "auto" since session 14: Baby, three seeds, test R@20 fp32 0.0961 ± 0.0001 and bf16
    # 0.0960 ± 0.0002, same best epochs (docs/results.md, "Session 14")
    ModelEntry("siger", "dgl_synergraph.models.siger:SIGER", "siger_infused",
               run_defaults={"precision": "auto"},
               dataset_defaults={"baby": {"anchor_weight": 0.0}}),
]}


def get_model_entry(name: str) -> ModelEntry:
    if name not in MODELS:
        raise ConfigError(f"--model: unknown model {name!r}; choose from {', '.join(sorted(MODELS))}")
    return MODELS[name]


def resolve_model_params(name: str, given: dict[str, Any], other_settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """``given`` over the model's constructor defaults, each checked against its annotation.
    ``other_settings`` (run setting names) only feed the "did you mean" hint."""
    hyperparameters = get_model_entry(name).hyperparameters
    unknown = sorted(set(given) - set(hyperparameters))
    if unknown:
        known = ", ".join(hyperparameters) or "none"
        close = difflib.get_close_matches(unknown[0], list(hyperparameters) + list(other_settings), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"model {name!r} has no setting {unknown[0]!r} (its settings: {known}){hint}")
    resolved = {key: hp.default for key, hp in hyperparameters.items()}
    resolved.update({key: hyperparameters[key].coerce(value, name) for key, value in given.items()})
    return resolved


def build_model(name: str, dataset, params: dict[str, Any], device) -> Recommender:
    """The model ``name`` for ``dataset`` on ``device``: its graph recipe first, then its
    constructor with every hyperparameter (``params`` over the defaults)."""
    entry = get_model_entry(name)
    resolved = resolve_model_params(name, params)
    recipe = entry.recipe()
    wanted = [p for p in inspect.signature(recipe).parameters if p not in ("dataset", "device")]
    inputs = recipe(dataset, device=device, **{key: resolved[key] for key in wanted})
    return entry.model_class()(**inputs, **resolved).to(device)
