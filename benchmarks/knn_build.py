"""Modality kNN graph build time and peak memory (chunked cosine top-K, no cache).

    .venv/bin/python -m benchmarks.knn_build [--dataset clothing] [--k 30] [--chunk 4096] [--search fp32 bf16]

Each (modality, search) is built in a fresh child process so its peak RSS is its own. With
several ``--search`` modes it also says how far each graph is from the first mode's: the share
of items whose neighbour lists are identical, and the largest edge-weight difference. Also
prints what a dense |I| x |I| float32 similarity matrix would need, for comparison.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import tempfile
import time
from pathlib import Path

from benchmarks.common import machine, require_dataset


def _build(path: str, modality: str, k: int, chunk: int, search: str, out: str, queue) -> None:
    import numpy as np

    from dgl_synergraph.graphs.knn import knn_graph

    features = np.load(path).astype(np.float32)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    graph = knn_graph(features, k, chunk_rows=chunk, search=search)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.savez(out, src=graph.src.numpy(), dst=graph.dst.numpy(), weight=graph.weight.numpy())
    queue.put({"modality": modality, "search": search, "items": features.shape[0], "dim": features.shape[1],
               "seconds": seconds, "peak_mb": peak / 1024, "build_mb": (peak - base) / 1024, "edges": len(graph.src)})


def _agreement(reference: str, other: str, n_items: int) -> tuple[float, float]:
    """(share of items with the same neighbour set, largest |weight difference| on shared edges)."""
    import numpy as np

    a, b = np.load(reference), np.load(other)
    same_items = 0
    keys_a, keys_b = a["dst"] * n_items + a["src"], b["dst"] * n_items + b["src"]
    for item_a, item_b in zip(np.split(np.sort(keys_a), np.cumsum(np.bincount(a["dst"], minlength=n_items))[:-1]),
                              np.split(np.sort(keys_b), np.cumsum(np.bincount(b["dst"], minlength=n_items))[:-1])):
        same_items += np.array_equal(item_a, item_b)
    shared, ia, ib = np.intersect1d(keys_a, keys_b, return_indices=True)
    largest = float(np.abs(a["weight"][ia] - b["weight"][ib]).max()) if len(shared) else float("nan")
    return same_items / n_items, largest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="clothing")
    parser.add_argument("--k", type=int, default=30)
    parser.add_argument("--chunk", type=int, default=4096)
    parser.add_argument("--search", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "auto"],
                        help="search modes to build, one after the other (the first is the reference)")
    args = parser.parse_args()
    folder = require_dataset(args.dataset)
    print(f"kNN build on {args.dataset}, k={args.k}, chunk {args.chunk} rows; {machine()}")
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as scratch:
        for path in sorted(folder.glob("*_feat.npy")):
            outs = []
            for search in args.search:
                queue, out = ctx.Queue(), str(Path(scratch) / f"{path.stem}-{search}.npz")
                proc = ctx.Process(target=_build, args=(str(path), path.name[:-9], args.k, args.chunk, search, out,
                                                        queue))
                proc.start()
                row = queue.get()
                proc.join()
                dense_mb = row["items"] ** 2 * 4 / 2**20
                print(f"  {row['modality']:<6} {row['items']} x {row['dim']}, {search}: {row['seconds']:.2f} s, peak RSS "
                      f"{row['peak_mb']:.0f} MB (+{row['build_mb']:.0f} MB while building); {row['edges']} edges; "
                      f"a dense similarity matrix alone would be {dense_mb:.0f} MB")
                if outs:
                    same, largest = _agreement(outs[0], out, row["items"])
                    row.update(same_neighbours=same, largest_weight_difference=largest)
                    print(f"    against {args.search[0]}: {100 * same:.3f}% of items have the same neighbours; "
                          f"largest weight difference {largest:.2e}")
                outs.append(out)
                print("  " + json.dumps(row))


if __name__ == "__main__":
    main()
