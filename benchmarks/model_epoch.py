"""Seconds per training epoch and per full-ranking evaluation of any registered model on a dataset.

    .venv/bin/python -m benchmarks.model_epoch [--dataset baby] [--model siger] [--epochs 3] [--set knn_k=10 ...]

Times the trainer's own ``train_epoch`` (per-epoch hook, sampling, every batch and optimiser step)
and the evaluator, with the default config or the one given with ``--set`` (as in
``synergraph train``).
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
from dgl_synergraph.training.trainer import model_for, optimizer_for, tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--model", default="lightgcn")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="a setting or model hyperparameter, as in 'synergraph train --set'; repeatable")
    args = parser.parse_args()

    try:  # a bad --set fails before the dataset is read
        config = build_config({"dataset": args.dataset, "model": args.model, "device": "cpu"}, parse_set_values(args.settings))
    except ConfigError as err:
        parser.error(str(err))
    data = load_dataset(path=require_dataset(args.dataset))
    tune_allocator(data)  # as the trainer does
    device = torch.device("cpu")
    model = model_for(config, data, device)
    optimizer = optimizer_for(model, config)
    batches = BPRBatches(data.train, data.n_items, torch.Generator().manual_seed(config.seed))
    evaluator = split_evaluator(data, "valid", config.ks, config.eval_batch_size, device)

    epoch_times, eval_times = [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        train_epoch(model, optimizer, batches, config.batch_size, device)
        epoch_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        evaluator.evaluate(model.scorer())
        eval_times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    overrides = f" [{', '.join(args.settings)}]" if args.settings else " [defaults]"
    print(f"{args.model}{overrides} on {args.dataset} ({data.n_users} users, {data.n_items} items, {len(data.train)} train); {machine()}")
    print(f"  train epoch (batch {config.batch_size}): {min(epoch_times):.2f} s (min of {args.epochs})")
    print(f"  full-ranking eval ({evaluator.n_users} valid users, batch {config.eval_batch_size}): {min(eval_times):.2f} s")
    print(f"  peak RSS: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
