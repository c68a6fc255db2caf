"""Collaborative (co-occurrence) item graph build time and peak memory, from training pairs.

    .venv/bin/python benchmarks/cooccurrence_build.py [--dataset clothing] [--k 10]
"""

from __future__ import annotations

import argparse
import resource
import time

from benchmarks.common import machine, require_dataset
from dgl_synergraph.data import load_dataset
from dgl_synergraph.graphs.cooccurrence import cooccurrence_graph


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="clothing")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--block", type=int, default=4096)
    args = parser.parse_args()
    data = load_dataset(path=require_dataset(args.dataset), modalities=[])
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    graph = cooccurrence_graph(data.train, data.n_users, data.n_items, args.k, block_items=args.block)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"co-occurrence graph on {args.dataset} ({data.n_items} items, {len(data.train)} train pairs), k={args.k}, "
          f"blocks of {args.block} items; {machine()}")
    print(f"  {seconds:.2f} s, peak RSS {peak / 1024:.0f} MB (+{(peak - base) / 1024:.0f} MB while building), "
          f"{len(graph.src)} edges")


if __name__ == "__main__":
    main()
