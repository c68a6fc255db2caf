"""Preprocess speed: a generated Clothing-size raw Amazon input (no text encoding), and text
encoding throughput of the offline MiniLM model on CPU.

    .venv/bin/python benchmarks/preprocess.py [--reviews 280000] [--items 23000] [--users 40000] [--texts 2000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.common import machine
from dgl_synergraph.data.preprocess import PreprocessOptions, preprocess
from dgl_synergraph.data.raw import read_reviews


def write_reviews(path: Path, n_reviews: int, n_users: int, n_items: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    users = rng.integers(n_users, size=n_reviews)
    items = np.minimum((rng.pareto(1.2, size=n_reviews) * n_items / 20).astype(int), n_items - 1)
    times = rng.integers(1_300_000_000, 1_400_000_000, size=n_reviews)
    with gzip.open(path, "wt") as handle:
        for u, i, t in zip(users, items, times):
            handle.write(json.dumps({"reviewerID": f"A{u:08d}", "asin": f"B{i:09d}", "overall": 5.0,
                                     "unixReviewTime": int(t), "reviewText": "fine"}) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reviews", type=int, default=280_000)
    parser.add_argument("--users", type=int, default=40_000)
    parser.add_argument("--items", type=int, default=23_000)
    parser.add_argument("--texts", type=int, default=2000)
    args = parser.parse_args()
    print(f"preprocess benchmark; {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "reviews_Bench.json.gz"
        write_reviews(raw, args.reviews, args.users, args.items)
        start = time.perf_counter()
        frame = read_reviews(raw)
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        report = preprocess(frame, Path(tmp) / "bench", PreprocessOptions(k_core=2), [raw])
        pipeline_s = time.perf_counter() - start
        m = report.manifest
        print(f"  {args.reviews} reviews ({raw.stat().st_size / 1e6:.1f} MB gz), {args.items} items: read {read_s:.2f} s, "
              f"pipeline {pipeline_s:.2f} s (dedup, 2-core, ids, split, write) -> {m['users']} users, {m['items']} items")
    try:
        from dgl_synergraph.data.text import encode_texts
        texts = [f"soft cotton baby romper number {i} with snaps, size {i % 12} months" for i in range(args.texts)]
        with tempfile.TemporaryDirectory() as cache:
            encode_texts(texts[:64], cache_dir=Path(cache), progress=False)  # load the model once
            start = time.perf_counter()
            encode_texts(texts, cache_dir=Path(cache), progress=False)
            seconds = time.perf_counter() - start
        print(f"  text encoding (all-MiniLM-L6-v2, CPU): {args.texts / seconds:.0f} items/s over {args.texts} short titles")
    except Exception as err:  # the text extra is optional
        print(f"  text encoding skipped: {err}")


if __name__ == "__main__":
    main()
