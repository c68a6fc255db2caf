"""Run directories: the files a run writes and reads, nothing else.

A run directory holds ``config.json`` (resolved config, versions, data checksums),
``metrics.json``, ``history.csv``, ``checkpoint.pt`` and ``train.log``. Every file is written
atomically (temp file, then rename). Runs live under ``$SYNERGRAPH_RUNS`` (default ``runs/``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from dgl_synergraph.config import RunConfig
from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.errors import RunError
from dgl_synergraph.training.distributed import rank_zero_only
from dgl_synergraph.training.fused_adam import available as fused_adam_available
from dgl_synergraph.utils import atomic_write, environment_versions, write_json

CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
CHECKPOINT_FILE = "checkpoint.pt"
LOG_FILE = "train.log"


def runs_root() -> Path:
    return Path(os.environ.get("SYNERGRAPH_RUNS", "runs"))


def default_run_dir(config: RunConfig, root: Path | None = None) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (root or runs_root()) / f"{config.dataset}-{config.model}-{stamp}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = base.with_name(f"{base.name}-{n}")
    return path


def latest_run(root: Path | None = None) -> Path:
    """The run directory under ``root`` (any depth) whose checkpoint was written last."""
    root = root or runs_root()
    checkpoints = list(root.glob(f"**/{CHECKPOINT_FILE}")) if root.is_dir() else []
    if not checkpoints:
        raise RunError(f"--run: no run directory under {root}/ (train one with 'synergraph train', "
                       f"set $SYNERGRAPH_RUNS, or pass --run RUN_DIR)")
    return max(checkpoints, key=lambda path: path.stat().st_mtime).parent


RUN_FILES = (CONFIG_FILE, METRICS_FILE, HISTORY_FILE, CHECKPOINT_FILE, LOG_FILE)


def clear_run(run_dir: Path) -> None:
    """Remove the files a run writes (``train --overwrite``); anything else in the folder stays.
    The config goes last, so an interrupted clear still reads as a run."""
    for name in sorted(RUN_FILES, key=lambda n: n == CONFIG_FILE):
        (run_dir / name).unlink(missing_ok=True)


def read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing ({what}); is this a run directory?") from None
    except json.JSONDecodeError as err:
        raise RunError(f"{path}: not valid JSON ({err.msg})") from None


def read_saved(run_dir: Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run's config and the whole ``config.json`` (data path, checksums, versions)."""
    saved = read_json(Path(run_dir) / CONFIG_FILE, "the run's configuration")
    return RunConfig.from_saved(saved["config"]), saved


@rank_zero_only
def write_config(run_dir: Path, config: RunConfig, dataset: Dataset, precision: str) -> None:
    """``precision``: the one the run computes in (``config.precision`` may say "auto")."""
    write_json(run_dir / CONFIG_FILE, {
        "config": config.model_dump(),
        "versions": environment_versions(),
        "runtime": {"torch_threads": torch.get_num_threads(), "precision": precision,
                    "adam": "fused C kernel" if fused_adam_available() else "torch.optim.Adam"},
        "data": {
            "path": str(dataset.path),
            "checksums": dataset.checksums,
            "summary": dataset.summary(),
            "dropped_cold_users": dataset.dropped_cold_users,
        },
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    })


@rank_zero_only
def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    write_json(run_dir / METRICS_FILE, metrics)


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    path = Path(run_dir) / METRICS_FILE
    return read_json(path, "metrics") if path.is_file() else None


@rank_zero_only
def write_history(run_dir: Path, history: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    atomic_write(run_dir / HISTORY_FILE, lambda tmp: tmp.write_text(buffer.getvalue()))


def read_history(run_dir: Path) -> list[dict[str, str]]:
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@rank_zero_only
def save_checkpoint(run_dir: Path, payload: dict[str, Any]) -> None:
    atomic_write(run_dir / CHECKPOINT_FILE, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(run_dir: Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.is_file():
        raise RunError(f"{path}: missing checkpoint; the run never finished an epoch")
    try:
        return torch.load(path, map_location=device, weights_only=False)
    except Exception as err:  # torch raises many types for a corrupt file
        raise RunError(f"{path}: cannot read checkpoint ({type(err).__name__})") from None


def load_model_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path | None = None) -> None:
    """Load a saved state; entries the model no longer stores (e.g. frozen feature tables, which
    older checkpoints kept) are ignored, but every entry the model needs must be there, with its
    shape (a checkpoint of another dataset or model is a RunError naming ``source``)."""
    expected = model.state_dict()
    where = f"{source}: " if source is not None else ""
    missing = [k for k in expected if k not in state]
    if missing:
        raise RunError(f"{where}the checkpoint lacks {missing[0]!r}: it was written by another model")
    for key, value in expected.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise RunError(f"{where}the checkpoint's {key} has shape {list(state[key].shape)} where this model and "
                           f"dataset need {list(value.shape)}: it was trained on another dataset or settings")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=True)
