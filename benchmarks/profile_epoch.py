"""Where a training epoch's time goes: torch.profiler over the trainer's own ``train_epoch``.

    .venv/bin/python -m benchmarks.profile_epoch --dataset baby --model mgcn [--device cuda] [--shapes] [--set k=v ...]

One epoch warms up (caches, allocator, kernels), the next is profiled; prints the operators by
self time on the CPU and, on a GPU, by self time on the device, then the wall time per step.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.common import require_dataset
from dgl_synergraph.config import parse_set_values
from dgl_synergraph.data import load_dataset
from dgl_synergraph.training import build_config, train_epoch
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.training.trainer import model_for, optimizer_for, steps_per_epoch, tune_allocator
from dgl_synergraph.utils import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--model", default="mgcn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rows", type=int, default=20, help="operators listed per table")
    parser.add_argument("--shapes", action="store_true", help="group operators by input shapes")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()

    config = build_config({"dataset": args.dataset, "model": args.model, "device": args.device},
                          parse_set_values(args.settings))
    device = resolve_device(config.device)
    data = load_dataset(path=require_dataset(args.dataset))
    tune_allocator(data)
    model = model_for(config, data, device)
    optimizer = optimizer_for(model, config)
    batches = BPRBatches(data.train, data.n_items, torch.Generator().manual_seed(config.seed))
    train_epoch(model, optimizer, batches, config.batch_size, device)  # warm-up

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    start = time.perf_counter()
    with profile(activities=activities, record_shapes=args.shapes) as prof:
        train_epoch(model, optimizer, batches, config.batch_size, device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    steps = steps_per_epoch(batches, config.batch_size)
    table = prof.key_averages(group_by_input_shape=args.shapes)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows))
    if device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=args.rows))
    print(f"{args.model} on {args.dataset}, {device}: profiled epoch {seconds:.2f} s, {steps} steps, "
          f"{1000 * seconds / steps:.1f} ms per step (profiler overhead included)")


if __name__ == "__main__":
    main()
