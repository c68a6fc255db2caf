"""From layers of settings to one resolved :class:`RunConfig`: run settings validated by the
config, model hyperparameters by the registry (which reads them from the model's constructor)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from dgl_synergraph.config import RunConfig, one_line, split_layers
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.models.registry import get_model_entry, resolve_model_params


def build_config(*layers: dict[str, Any]) -> RunConfig:
    """Merge ``layers`` (later wins) over the model's run defaults and per-dataset defaults, and
    return the validated config with every model hyperparameter filled in."""
    run, model_params = split_layers(*layers)
    entry = get_model_entry(str(run.get("model", RunConfig.model_fields["model"].default)))
    dataset = str(run.get("dataset", RunConfig.model_fields["dataset"].default))
    try:
        config = RunConfig(**{**entry.run_defaults, **run})
    except ValidationError as err:
        raise ConfigError(one_line(err)) from None
    params = {**entry.dataset_defaults.get(dataset, {}), **model_params}
    resolved = resolve_model_params(config.model, params, tuple(RunConfig.model_fields))
    return config.model_copy(update={"model_params": resolved})
