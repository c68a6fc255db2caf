"""Grid search selected on validation only, then the winner rerun over several seeds.

Layout of a sweep folder::

    sweep.json                    grid, every cell's valid/test metrics, the selection, seed results
    report.md (+ PNGs)            the report of the selected configuration's seed runs and all cells
    cells/<cell>/seed<S>/         one ordinary run directory per (cell, seed)

Interruptible: a finished cell (metrics.json) is never rerun; a cell killed mid-training is
resumed from its checkpoint.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Callable

import yaml

from dgl_synergraph.config import RunConfig
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.training.configure import build_config
from dgl_synergraph.training.rundir import CHECKPOINT_FILE, METRICS_FILE, read_metrics, runs_root
from dgl_synergraph.training.trainer import RunResult, resume, train
from dgl_synergraph.utils import write_json

log = logging.getLogger(__name__)


def parse_grid(specs: list[str]) -> dict[str, list[Any]]:
    """``["lr=0.001,0.01", "n_layers=1,2"]`` -> ``{"lr": [0.001, 0.01], "n_layers": [1, 2]}``; no specs,
    an empty grid (one cell: the base configuration)."""
    grid: dict[str, list[Any]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid {spec!r}: expected key=value1,value2,...")
        if key in grid:
            raise ConfigError(f"--grid: {key!r} is given twice")
        try:
            grid[key] = [yaml.safe_load(v) for v in raw.split(",")]
        except yaml.YAMLError:
            raise ConfigError(f"--grid {spec!r}: a value is not valid YAML") from None
        if len(set(map(repr, grid[key]))) != len(grid[key]):
            raise ConfigError(f"--grid {spec!r}: repeated value")
    return grid


def cell_name(settings: dict[str, Any]) -> str:
    text = ",".join(f"{k}={v}" for k, v in settings.items())
    return re.sub(r"[^A-Za-z0-9_.,=-]", "_", text) or "default"


def select_best(cells: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The cell with the highest VALIDATION ``metric`` (first in grid order on ties). Test
    metrics are never read here."""
    return max(cells, key=lambda cell: (cell["valid"][metric], -cell["index"]))


def _run_or_resume(config: RunConfig, run_dir: Path, train_fn: Callable[..., RunResult],
                   resume_fn: Callable[..., RunResult], progress: bool) -> dict:
    if (run_dir / METRICS_FILE).is_file():
        log.info("sweep: %s already finished", run_dir)
        return read_metrics(run_dir)
    if (run_dir / CHECKPOINT_FILE).is_file():
        log.info("sweep: resuming %s", run_dir)
        return resume_fn(run_dir, progress=progress).metrics
    if run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: nothing to keep
    return train_fn(config, out=run_dir, progress=progress).metrics


def run_sweep(base: list[dict[str, Any]], grid: dict[str, list[Any]], seeds: int, out: str | Path | None = None,
              train_fn: Callable[..., RunResult] = train, resume_fn: Callable[..., RunResult] = resume,
              progress: bool = True, report: bool = True) -> dict[str, Any]:
    """Train every grid cell over the ``base`` layers of settings (as ``build_config`` merges
    them) on the base seed, pick the best on validation, rerun it on ``seeds`` seeds (base seed,
    +1, ...), and write ``sweep.json`` (and a report) to ``out`` (default
    ``<runs>/sweep-<dataset>-<model>``). An empty grid is one cell, the base configuration: its
    seeds then make a resumable mean ± std of that configuration."""
    if seeds < 1:
        raise ConfigError("--seeds: must be at least 1")
    keys = list(grid)
    settings_list = [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]
    configs = [build_config(*base, s) for s in settings_list]  # validate every cell before training any
    out = Path(out) if out is not None else runs_root() / f"sweep-{configs[0].dataset}-{configs[0].model}"
    metric = configs[0].valid_metric
    first_seed = configs[0].seed
    merged_base = {k: v for layer in base for k, v in layer.items() if v is not None}
    summary: dict[str, Any] = {"base": merged_base, "out": str(out), "grid": grid, "seeds": seeds,
                               "selection_metric": f"valid {metric}", "cells": [], "selected": None, "seed_runs": []}
    for index, (settings, config) in enumerate(zip(settings_list, configs)):
        run_dir = out / "cells" / cell_name(settings) / f"seed{first_seed}"
        log.info("sweep: cell %d/%d %s", index + 1, len(configs), settings)
        metrics = _run_or_resume(config, run_dir, train_fn, resume_fn, progress)
        summary["cells"].append({"index": index, "settings": settings, "run": str(run_dir),
                                 "valid": metrics["valid"], "test": metrics["test"]})
        write_json(out / "sweep.json", summary)

    best = select_best(summary["cells"], metric)
    summary["selected"] = {"settings": best["settings"], f"valid {metric}": best["valid"][metric]}
    log.info("sweep: selected %s (valid %s %.4f)", best["settings"], metric, best["valid"][metric])
    for seed in range(first_seed, first_seed + seeds):
        run_dir = out / "cells" / cell_name(best["settings"]) / f"seed{seed}"
        config = build_config(*base, best["settings"], {"seed": seed})
        metrics = _run_or_resume(config, run_dir, train_fn, resume_fn, progress)
        summary["seed_runs"].append({"seed": seed, "run": str(run_dir), "valid": metrics["valid"], "test": metrics["test"]})
        write_json(out / "sweep.json", summary)
    summary["test_mean_std"] = {
        key: [mean(values), stdev(values) if len(values) > 1 else 0.0]
        for key in summary["seed_runs"][0]["test"]
        for values in [[run["test"][key] for run in summary["seed_runs"]]]
    }
    write_json(out / "sweep.json", summary)
    if report:
        from dgl_synergraph.reports.report import build_report

        runs = [cell["run"] for cell in summary["cells"]] + [r["run"] for r in summary["seed_runs"]]
        build_report(list(dict.fromkeys(runs)), out / "report.md", title=f"Sweep: {configs[0].model} on {configs[0].dataset}")
    return summary
