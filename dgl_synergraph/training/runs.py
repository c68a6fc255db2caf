"""Run directories: what a run writes, and loading a finished run back.

A run directory holds ``config.json`` (resolved config, versions, data checksums),
``metrics.json``, ``history.csv``, ``checkpoint.pt`` and ``train.log``. Every file is written
atomically (temp file, then rename).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dgl_synergraph.config import RunConfig
from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.loader import load_dataset
from dgl_synergraph.errors import RunError
from dgl_synergraph.graphs.hetero import build_heterograph
from dgl_synergraph.models.base import Recommender
from dgl_synergraph.models.registry import ModelContext, build_model
from dgl_synergraph.utils import atomic_write, environment_versions, resolve_device, write_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"


def default_run_dir(config: RunConfig, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / f"{config.dataset}-{config.model}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def build_for_dataset(config: RunConfig, dataset: Dataset, device: torch.device) -> Recommender:
    """The model a config describes, on ``device``, freshly initialised from the config's seed."""
    torch.manual_seed(config.seed)
    graph = build_heterograph(dataset.n_users, dataset.n_items, dataset.train)
    ctx = ModelContext(dataset=dataset, graph=graph, embedding_dim=config.embedding_dim,
                       reg_weight=config.reg_weight, device=device)
    return build_model(config.model, ctx, config.model_params)


def write_config(run_dir: Path, config: RunConfig, dataset: Dataset) -> None:
    write_json(run_dir / CONFIG_FILE, {
        "config": config.model_dump(),
        "versions": environment_versions(),
        "data": {
            "path": str(dataset.path),
            "checksums": dataset.checksums,
            "summary": dataset.summary(),
            "dropped_cold_users": dataset.dropped_cold_users,
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / HISTORY_FILE, lambda tmp: tmp.write_text(buffer.getvalue()))


def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    atomic_write(run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing ({what}); is this a run directory?") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err.msg})") from None


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing checkpoint; the run never finished an epoch")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt file
        raise RunError(f"{path}: cannot read checkpoint ({type(err).__name__})") from None


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a saved state; entries the model no longer stores (e.g. frozen feature tables, which
    older checkpoints kept) are ignored, but every entry the model needs must be there."""
    expected = model.state_dict().keys()
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)


@dataclass
class LoadedRun:
    run_dir: Path
    config: RunConfig
    dataset: Dataset
    model: Recommender
    device: torch.device
    metrics: dict | None


def load_run(run_dir: str | Path, device: str = "auto", data_dir: str | Path | None = None) -> LoadedRun:
    """Load a run's dataset (checksum-verified) and its best model, ready to score."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"--run {run_dir}: no such run directory")
    saved = read_json(run_dir / CONFIG_FILE, "the run's configuration")
    config = RunConfig(**saved["config"])
    data_path = Path(data_dir) / config.dataset if data_dir is not None else Path(saved["data"]["path"])
    if not data_path.is_dir():
        raise RunError(f"{run_dir / CONFIG_FILE}: the run's data folder {data_path} is gone (pass --data-dir)")
    modalities = [f[: -len("_feat.npy")] for f in saved["data"]["checksums"] if f.endswith("_feat.npy")]
    dataset = load_dataset(config.dataset, path=data_path, modalities=modalities)
    for name, digest in saved["data"]["checksums"].items():
        if dataset.checksums.get(name) != digest:
            raise RunError(f"{data_path / name}: changed since the run was trained (checksum differs)")
    resolved = resolve_device(device)
    checkpoint = load_checkpoint(run_dir, resolved)
    model = build_for_dataset(config, dataset, resolved)
    load_model_state(model, checkpoint["best_model_state"])
    model.eval()
    metrics_path = run_dir / METRICS_FILE
    metrics = read_json(metrics_path, "metrics") if metrics_path.is_file() else None
    return LoadedRun(run_dir, config, dataset, model, resolved, metrics)
