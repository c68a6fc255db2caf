"""Collaborative (co-occurrence) item graph build time and peak memory, from training pairs.

    .venv/bin/python benchmarks/cooccurrence_build.py [--dataset clothing] [--k 10]
    .venv/bin/python benchmarks/cooccurrence_build.py --generated-elec   # 192k users, 63k items, 1.7M pairs
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from benchmarks.common import machine, require_dataset
from dgl_synergraph.data import load_dataset
from dgl_synergraph.graphs.cooccurrence import cooccurrence_graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="clothing")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=4096)
    parser.add_argument("--generated-elec", action="store_true",
                        help="a generated Elec-size interaction set (power-law item popularity) instead of a dataset")
    args = parser.parse_args()
    if args.generated_elec:
        rng = np.random.default_rng(0)
        n_users, n_items, n_pairs = 192_403, 63_001, 1_689_188
        users = rng.integers(n_users, size=n_pairs)
        items = np.minimum((rng.pareto(1.1, size=n_pairs) * n_items / 50).astype(np.int64), n_items - 1)
        train = np.unique(np.stack([users, items], 1), axis=0)
        name = "generated Elec-size"
    else:
        data = load_dataset(path=require_dataset(args.dataset), modalities=[])
        train, n_users, n_items, name = data.train, data.n_users, data.n_items, args.dataset
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    graph = cooccurrence_graph(train, n_users, n_items, args.k, block_items=args.block)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"co-occurrence graph on {name} ({n_items} items, {len(train)} train pairs), k={args.k}, "
          f"blocks of {args.block} items; {machine()}")
    print(f"  {seconds:.2f} s, peak RSS {peak / 1024:.0f} MB (+{(peak - base) / 1024:.0f} MB while building), "
          f"{len(graph.src)} edges")


if __name__ == "__main__":
    main()
