"""The typed, validated run configuration (how to train, not what to train).

Model hyperparameters are not declared here: they live in each model's constructor and are
resolved by the registry (``training/configure.py`` merges the two). Sources, later wins:
defaults < the model's run defaults and per-dataset hyperparameter defaults < YAML file
(``--config``) < ``--set key=value`` < named CLI flags.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from dgl_synergraph.errors import ConfigError

# Settings that older run directories kept at the top level; they are model hyperparameters now.
MOVED_TO_MODEL = ("embedding_dim", "reg_weight")


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
    patience: int = Field(20, ge=0)
    eval_every: int = Field(1, gt=0)
    valid_metric: str = "recall@20"
    ks: list[int] = Field(default_factory=lambda: [10, 20, 50])
    mask_valid_in_test: bool = False
    seed: int = 999
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # bf16: modality projections, contrastive similarity products and the kNN candidate search in
    # bfloat16 (faster on AMX / AVX-512 bf16 CPUs and recent GPUs; changes numerics); "auto": bf16
    # where the device multiplies it natively, else fp32 (a model may default to it, README)
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    # propagation backend: "dgl" (DGL's copy_u_sum for the interaction relations, CPU), "torch"
    # (CSR products, any device torch supports), or "auto": torch (the faster one, nn/propagation.py)
    backend: Literal["auto", "dgl", "torch"] = "auto"
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
        from dgl_synergraph.evaluation.metrics import METRICS  # here: keeps 'import config' free of torch

        name, _, k = value.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) <= 0:
            raise ValueError(f"expected <metric>@<K> with metric in {', '.join(METRICS)}")
        return value

    @property
    def valid_k(self) -> int:
        return int(self.valid_metric.split("@")[1])

    @classmethod
    def from_saved(cls, saved: dict[str, Any]) -> "RunConfig":
        """A config read back from a run directory, older layouts included."""
        saved = dict(saved)
        moved = {key: saved.pop(key) for key in MOVED_TO_MODEL if key in saved}
        if moved:
            saved["model_params"] = {**moved, **saved.get("model_params", {})}
        return cls(**saved)


def one_line(err: ValidationError) -> str:
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


def split_layers(*layers: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Merge layers of settings (later wins; ``None`` means "not given") into run settings and
    everything else (model hyperparameters, checked later against the model)."""
    run: dict[str, Any] = {}
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
                run[key] = value
            else:
                model_params[key] = value
    return run, model_params
