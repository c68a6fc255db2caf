"""Seconds per training epoch and per full-ranking evaluation of any registered model on a dataset.

    .venv/bin/python -m benchmarks.model_epoch [--dataset baby] [--model siger] [--epochs 3] [--set knn_k=10 ...]
    python -m benchmarks.model_epoch --device cuda --set backend=torch      # a GPU, torch propagation

Times the trainer's own ``train_epoch`` (per-epoch hook, sampling, every batch and optimiser step)
and the evaluator, with the default config or the one given with ``--set`` (as in
``synergraph train``). On a GPU the clock is read after ``torch.cuda.synchronize()``, and the
peak reported is the GPU's (``torch.cuda.max_memory_allocated``) beside the process's RSS.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from benchmarks.common import machine, require_dataset
from dgl_synergraph.config import parse_set_values
from dgl_synergraph.data import load_dataset
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.training import build_config, train_epoch
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.nn.propagation import backend_of
from dgl_synergraph.training.trainer import model_for, optimizer_for, tune_allocator
from dgl_synergraph.utils import resolve_device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting or model hyperparameter, as in 'synergraph train --set'; repeatable")
    parser.add_argument("--device", default="cpu", help="auto, cpu or cuda, as 'synergraph train --device'")
    args = parser.parse_args()

    try:  # a bad --set or --device fails before the dataset is read
        config = build_config({"dataset": args.dataset, "model": args.model, "device": args.device},
                              parse_set_values(args.settings))
        device = resolve_device(config.device)
    except ConfigError as err:
        parser.error(str(err))
    data = load_dataset(path=require_dataset(args.dataset))
    tune_allocator(data)  # as the trainer does
    start = time.perf_counter()
    model = model_for(config, data, device)
    build_seconds = time.perf_counter() - start
    optimizer = optimizer_for(model, config)
    batches = BPRBatches(data.train, data.n_items, torch.Generator().manual_seed(config.seed))
    evaluator = split_evaluator(data, "valid", config.ks, config.eval_batch_size, device)

    def clock() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter()

    epoch_times, eval_times = [], []
    for _ in range(args.epochs):
        start = clock()
        train_epoch(model, optimizer, batches, config.batch_size, device)
        epoch_times.append(clock() - start)
        start = clock()
        evaluator.evaluate(model.scorer())
        eval_times.append(clock() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overrides = f" [{', '.join(args.settings)}]" if args.settings else " [defaults]"
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else machine()
    print(f"{args.model}{overrides} on {args.dataset} ({data.n_users} users, {data.n_items} items, {len(data.train)} train); "
          f"{device}, {where}, {backend_of(model)} propagation, torch {torch.__version__}")
    print(f"  model build (graphs included): {build_seconds:.2f} s")
    print(f"  train epoch (batch {config.batch_size}): {min(epoch_times):.2f} s (min of {args.epochs}; "
          f"first {epoch_times[0]:.2f} s)")
    print(f"  full-ranking eval ({evaluator.n_users} valid users, batch {config.eval_batch_size}): {min(eval_times):.2f} s")
    print(f"  peak RSS: {peak_mb:.0f} MB")
    if device.type == "cuda":
        print(f"  peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
