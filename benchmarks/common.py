"""Helpers for the benchmark scripts: timing and locating the shared data."""

from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

SHARED_DATA = Path(os.environ.get("SYNERGRAPH_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def median_seconds(fn: Callable[[], object], repeat: int = 10, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def require_dataset(name: str) -> Path:
    folder = SHARED_DATA / name
    if not (folder / f"{name}.inter").is_file():
        raise SystemExit(f"{folder}: not found (set SYNERGRAPH_DATA to the folder holding {name}/)")
    return folder
