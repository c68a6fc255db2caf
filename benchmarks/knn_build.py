"""Modality kNN graph build time and peak memory (chunked cosine top-K, no cache).

    .venv/bin/python benchmarks/knn_build.py [--dataset clothing] [--k 30] [--chunk 2048]

Each modality is built in a fresh child process so its peak RSS is its own. Also prints what a
dense |I| x |I| float32 similarity matrix would need, for comparison.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

from benchmarks.common import machine, require_dataset


def _build(path: str, modality: str, k: int, chunk: int, queue) -> None:
    import numpy as np

    from dgl_synergraph.graphs.knn import knn_graph

    features = np.load(path).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    graph = knn_graph(features, k, chunk_rows=chunk)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put({"modality": modality, "items": features.shape[0], "dim": features.shape[1], "seconds": seconds,
               "peak_mb": peak / 1024, "build_mb": (peak - base) / 1024, "edges": len(graph.src)})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="clothing")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--chunk", type=int, default=2048)
    args = parser.parse_args()
    folder = require_dataset(args.dataset)
    print(f"kNN build on {args.dataset}, k={args.k}, chunk {args.chunk} rows; {machine()}")
    ctx = mp.get_context("spawn")
    for path in sorted(folder.glob("*_feat.npy")):
        queue = ctx.Queue()
        proc = ctx.Process(target=_build, args=(str(path), path.name[:-9], args.k, args.chunk, queue))
        proc.start()
        row = queue.get()
        proc.join()
        dense_mb = row["items"] ** 2 * 4 / 2**20
        print(f"  {row['modality']:<6} {row['items']} x {row['dim']}: {row['seconds']:.2f} s, peak RSS "
              f"{row['peak_mb']:.0f} MB (+{row['build_mb']:.0f} MB while building); {row['edges']} edges; "
              f"a dense similarity matrix alone would be {dense_mb:.0f} MB")
        print("  " + json.dumps(row))


if __name__ == "__main__":
    main()
