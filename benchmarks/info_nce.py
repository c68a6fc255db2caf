"""One in-batch InfoNCE term, forward + backward, on real training batches: the batch's rows
gathered (repeats included) against the distinct rows with their counts (``info_nce(..., rows=)``,
what the models call).

    .venv/bin/python -m benchmarks.info_nce [--dataset baby] [--batches 20] [--dim 64]

The tables are random (the cost does not depend on their values); the row indices are the users
and positive items of the trainer's own BPR batches, so the share of repeats is the dataset's.
Prints the median milliseconds of each form for the user and the item term, fp32 and bf16
products, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from benchmarks.common import machine, require_dataset
from dgl_synergraph.data import load_dataset
from dgl_synergraph.losses import info_nce
from dgl_synergraph.training.sampler import BPRBatches


def _median_ms(term, batches: list[torch.Tensor]) -> float:
    for rows in batches[:2]:
        term(rows).backward()
    times = []
    for rows in batches:
        start = time.perf_counter()
        term(rows).backward()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()

    data = load_dataset(path=require_dataset(args.dataset))
    batches = [b for b in BPRBatches(data.train, data.n_items, torch.Generator().manual_seed(0)).epoch(args.batch_size)
               if len(b[0]) == args.batch_size][: args.batches]
    generator = torch.Generator().manual_seed(0)
    print(f"{args.dataset}: {len(batches)} batches of {args.batch_size}, d={args.dim}; {machine()}")
    for side, column, n_rows in (("users", 0, data.n_users), ("items", 1, data.n_items)):
        index = [b[column] for b in batches]
        distinct = statistics.mean(len(torch.unique(rows)) for rows in index)
        anchor = torch.randn(n_rows, args.dim, generator=generator, requires_grad=True)
        positive = torch.randn(n_rows, args.dim, generator=generator, requires_grad=True)
        for dtype in (None, torch.bfloat16):
            gathered = _median_ms(lambda rows: info_nce(anchor[rows], positive[rows], 0.2, dtype), index)
            by_rows = _median_ms(lambda rows: info_nce(anchor, positive, 0.2, dtype, rows=rows), index)
            name = "bf16" if dtype else "fp32"
            print(f"  {side:5s} ({distinct:,.0f} distinct of {args.batch_size}), {name} products: "
                  f"gathered rows {gathered:6.2f} ms, distinct rows {by_rows:6.2f} ms ({gathered / by_rows:.2f}x)")


if __name__ == "__main__":
    main()
