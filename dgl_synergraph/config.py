"""The typed, validated run configuration: the only place defaults and checks live.

Sources, later wins: defaults < the model's run defaults and per-dataset hyperparameter
defaults (registry) < YAML file (``--config``) < ``--set key=value`` < named CLI flags.
Keys that are not run settings are model hyperparameters (``n_layers=2``), checked against the
chosen model's builder in the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dgl_synergraph.errors import ConfigError
from dgl_synergraph.evaluation.metrics import METRICS
from dgl_synergraph.models.registry import get_model_entry, resolve_model_params


class RunConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    dataset: str = "sample"
    data_dir: str | None = None
    model: str = "lightgcn"
    model_params: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(1000, gt=0)
    batch_size: int = Field(2048, gt=0)
    eval_batch_size: int = Field(4096, gt=0)
    lr: float = Field(1e-3, gt=0)
    lr_decay: float = Field(1.0, gt=0, le=1)
    lr_decay_step: int = Field(50, gt=0)
    embedding_dim: int = Field(64, gt=0)
    reg_weight: float = Field(1e-4, ge=0)
    patience: int = Field(20, ge=0)
    eval_every: int = Field(1, gt=0)
    valid_metric: str = "recall@20"
    ks: list[int] = Field(default_factory=lambda: [10, 20, 50])
    mask_valid_in_test: bool = False
    seed: int = 999
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(5, gt=0)

    @field_validator("ks")
    @classmethod
    def _check_ks(cls, ks: list[int]) -> list[int]:
        if not ks or any(k <= 0 for k in ks):
            raise ValueError("every K must be a positive integer")
        return sorted(set(ks))

    @field_validator("valid_metric")
    @classmethod
    def _check_metric(cls, value: str) -> str:
        name, _, k = value.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) <= 0:
            raise ValueError(f"expected <metric>@<K> with metric in {', '.join(METRICS)}")
        return value

    @property
    def valid_k(self) -> int:
        return int(self.valid_metric.split("@")[1])


def _one_line(err: ValidationError) -> str:
    first = err.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "config"
    return f"config field {where!r}: {first['msg']}"


def parse_set_values(pairs: list[str]) -> dict[str, Any]:
    """``["epochs=5", "ks=[10,20]"]`` -> dict, values parsed as YAML scalars/lists."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            raise ConfigError(f"--set {pair!r}: value is not valid YAML") from None
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"--config {path}: cannot read ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"--config {path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of settings at the top level")
    return data


def build_config(*layers: dict[str, Any]) -> RunConfig:
    """Merge layers of settings (later wins), split run settings from model hyperparameters,
    validate both, and return the resolved config (model defaults filled in)."""
    merged: dict[str, Any] = {}
    model_params: dict[str, Any] = {}
    run_fields = set(RunConfig.model_fields) - {"model_params"}
    for layer in layers:
        for key, value in layer.items():
            if value is None and key != "data_dir":
                continue
            if key == "model_params":
                if not isinstance(value, dict):
                    raise ConfigError("config field 'model_params': expected a mapping")
                model_params.update(value)
            elif key in run_fields:
                merged[key] = value
            else:
                model_params[key] = value
    entry = get_model_entry(str(merged.get("model", RunConfig.model_fields["model"].default)))
    dataset = str(merged.get("dataset", RunConfig.model_fields["dataset"].default))
    merged = {**entry.run_defaults, **merged}
    model_params = {**entry.dataset_defaults.get(dataset, {}), **model_params}
    try:
        config = RunConfig(**merged)
    except ValidationError as err:
        raise ConfigError(_one_line(err)) from None
    resolved = resolve_model_params(config.model, model_params)
    return config.model_copy(update={"model_params": resolved})
