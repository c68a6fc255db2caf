"""The training loop shared by every model: BPR batches, early stopping on validation,
test at the best validation epoch, checkpoints and resume.

``train(config)`` starts a run, ``resume(run_dir)`` continues one, and ``train_epoch`` is the one
epoch both of them (and ``benchmarks/``) run.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from dgl_synergraph.config import RunConfig
from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.loader import load_dataset
from dgl_synergraph.errors import ConfigError, RunError, SynergraphError
from dgl_synergraph.evaluation.evaluator import split_evaluator
from dgl_synergraph.graphs.knn import knn_search
from dgl_synergraph.models.base import Recommender, set_precision
from dgl_synergraph.models.registry import build_model
from dgl_synergraph.nn.propagation import backend_of, resolve_backend, set_backend
from dgl_synergraph.training.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    LOG_FILE,
    RUN_FILES,
    clear_run,
    default_run_dir,
    load_checkpoint,
    load_model_state,
    read_saved,
    save_checkpoint,
    write_config,
    write_history,
    write_metrics,
)
from dgl_synergraph.training import distributed
from dgl_synergraph.training.fused_adam import FusedAdam
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.utils import (keep_freed_memory, remove_partial_writes, resolve_device, resolve_precision,
                                  seed_everything)

log = logging.getLogger(__name__)
LARGE_GRAPH_NODES = 100_000
package_log = logging.getLogger("dgl_synergraph")  # the run's train.log collects every library message


@dataclass
class TrainState:
    """Everything about the loop that a checkpoint must restore."""

    epoch: int = 0
    best_epoch: int = 0
    best_score: float = -math.inf
    stale_evals: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_model_state: dict[str, torch.Tensor] | None = None


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    history: list[dict[str, Any]]


class TrainingFailed(SynergraphError):
    pass


class RunStopped(SynergraphError):
    """Training was stopped by SIGINT or SIGTERM; the checkpoint holds the last finished epoch."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class _Terminated(BaseException):
    """Raised by the SIGTERM handler (a scheduler's or ``timeout``'s stop) like Ctrl-C's KeyboardInterrupt."""


def _raise_terminated(signum, frame) -> None:
    raise _Terminated()


def _cpu_state(model: torch.nn.Module, copy: bool = True) -> dict[str, torch.Tensor]:
    """The model's state on the CPU; ``copy=False`` shares a CPU model's tensors (for a state
    written at once: a copy of an Elec-size MGCN, fine-tuned table included, is 1.1 GB)."""
    return {k: v.detach().to("cpu", copy=copy) for k, v in model.state_dict().items()}


def _rng_states(generator: torch.Generator) -> dict[str, Any]:
    states = {"sampler": generator.get_state(), "torch": torch.get_rng_state(),
              "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng(states: dict[str, Any], generator: torch.Generator) -> None:
    generator.set_state(states["sampler"])
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _attach_log_file(run_dir: Path) -> logging.Handler:
    rank = distributed.current().rank
    handler = logging.FileHandler(run_dir / (LOG_FILE if rank == 0 else f"train.rank{rank}.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    handler.setLevel(logging.INFO)
    package_log.addHandler(handler)
    if package_log.level == logging.NOTSET or package_log.level > logging.INFO:
        package_log.setLevel(logging.INFO)
    return handler


def _install_sigterm_handler():
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


def _restore_sigterm_handler(previous) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def _stopped(stop: BaseException, run_dir: Path, unsaved: dict[str, Any] | None, on_disk: int | None) -> RunStopped:
    """Write the last finished epoch (if not on disk yet) and say how to go on."""
    name, code = ("SIGTERM", 143) if isinstance(stop, _Terminated) else ("SIGINT", 130)
    saved = on_disk
    if unsaved is not None:
        save_checkpoint(run_dir, unsaved)
        write_history(run_dir, unsaved["train_state"]["history"])
        saved = unsaved["train_state"]["epoch"]
    if saved is None:
        return RunStopped(f"stopped by {name} before the first epoch finished; nothing to resume in {run_dir}", code)
    log.info("stopped by %s; checkpoint of epoch %d written", name, saved)
    return RunStopped(f"stopped by {name}; {run_dir} holds epoch {saved}: continue with "
                      f"'synergraph train --resume {run_dir}'", code)


def _fmt(metrics: dict[str, float], keys: list[str]) -> str:
    return " ".join(f"{k}={metrics[k]:.4f}" for k in keys if k in metrics)


def model_for(config: RunConfig, dataset: Dataset, device: torch.device) -> Recommender:
    """The model ``config`` describes, on ``device``, freshly initialised from the config's seed."""
    torch.manual_seed(config.seed)
    precision = resolve_precision(config.precision, device)
    with knn_search("auto" if precision == "bf16" else "fp32"):  # bf16 may also pick kNN candidates
        model = build_model(config.model, dataset, config.model_params, device)
    set_precision(model, precision)
    set_backend(model, resolve_backend(config.backend))
    return model


def optimizer_for(model: Recommender, config: RunConfig) -> torch.optim.Optimizer:
    """The optimiser training uses (benchmarks time the same one)."""
    return FusedAdam(model.parameters(), lr=config.lr)


def tune_allocator(dataset: Dataset) -> bool:
    """Keep freed memory in the process (``utils.keep_freed_memory``) for graphs of 100,000+
    nodes, whose per-step buffers exceed glibc's 32 MB mmap threshold: a LightGCN step on
    Elec-size data took 225 ms instead of 389 ms. On Baby-size graphs it measured 10% slower,
    so it stays off there. Returns whether it is on."""
    if dataset.n_users + dataset.n_items >= LARGE_GRAPH_NODES:
        return keep_freed_memory()
    return False


def train(config: RunConfig, out: str | Path | None = None, dataset: Dataset | None = None,
          progress: bool = True, overwrite: bool = False) -> RunResult:
    """Train ``config`` and write its run directory (``out``, default ``runs/<dataset>-<model>-<time>``).
    A directory that already holds a run is refused, or with ``overwrite`` emptied first.
    Started by torchrun with several processes, it trains data-parallel (``distributed``)."""
    group = distributed.join(resolve_device(config.device))
    run_dir = distributed.broadcast(Path(out) if out is not None else default_run_dir(config), group)
    if (run_dir / CONFIG_FILE).exists():
        if not overwrite:
            raise RunError(f"--out {run_dir}: already holds a run (use --resume {run_dir} to continue it, "
                           f"or --overwrite to replace it)")
        distributed.barrier(group)  # every rank has seen the old run before rank 0 clears it
        if group.writes:
            clear_run(run_dir)
    distributed.barrier(group)
    return _start(config, run_dir, dataset, progress, resuming=False)


def resume(run_dir: str | Path, epochs: int | None = None, progress: bool = True) -> RunResult:
    """Continue the run in ``run_dir`` from its last checkpoint with its saved config; ``epochs``
    may raise the run's epoch limit to train further."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"--resume {run_dir}: no such run directory")
    config, _ = read_saved(run_dir)
    distributed.join(resolve_device(config.device))
    raised = epochs is not None and epochs > config.epochs
    if raised:
        config = config.model_copy(update={"epochs": epochs})
    return _start(config, run_dir, None, progress, resuming=True, rewrite_config=raised)


def _start(config: RunConfig, run_dir: Path, dataset: Dataset | None, progress: bool, resuming: bool,
           rewrite_config: bool = False) -> RunResult:
    device = resolve_device(config.device)
    seed_everything(config.seed)
    if dataset is None:
        dataset = load_dataset(config.dataset, config.data_dir)
    tune_allocator(dataset)
    too_long = [k for k in config.ks + [config.valid_k] if k > dataset.n_items]
    if too_long:
        raise ConfigError(f"ks: K={max(too_long)} exceeds the {dataset.n_items} items of dataset {dataset.name!r} "
                          f"(use e.g. --set ks=[5,10] --set valid_metric=recall@10)")
    model = model_for(config, dataset, device)  # before any file: a bad hyperparameter leaves nothing behind
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RunError(f"--out {run_dir}: cannot create the run directory ({err.strerror})") from None
    handler = _attach_log_file(run_dir)
    try:
        if distributed.current().writes:
            for name in remove_partial_writes(run_dir, RUN_FILES):
                log.info("removed %s, a file an interrupted write left behind", name)
        if not resuming or rewrite_config:  # the recorded config says how far the run may go
            write_config(run_dir, config, dataset, precision=resolve_precision(config.precision, device))
        return _train(config, dataset, model, run_dir, device, resuming, progress)
    finally:
        package_log.removeHandler(handler)
        handler.close()


def steps_per_epoch(batches: BPRBatches, batch_size: int) -> int:
    """Optimiser steps this rank takes in one epoch (its shard in a data-parallel run)."""
    return batches.count(batch_size) // distributed.current().size


def train_epoch(model: Recommender, optimizer: torch.optim.Optimizer, batches: BPRBatches, batch_size: int,
                device: torch.device, on_step: Callable[[], Any] | None = None) -> dict[str, float]:
    """One training epoch: the model's per-epoch hook, then every BPR batch with one optimiser
    step each (``on_step`` is called after each). Returns the mean of each loss term over the
    batches. In a data-parallel run this rank takes its shard of the batches and every step
    averages the gradients over the ranks."""
    group = distributed.current()
    model.train()
    model.on_epoch_start()
    sums: dict[str, torch.Tensor] = {}
    n_batches = 0
    epoch = batches.epoch(batch_size)
    if group.joined:
        epoch = distributed.shard(epoch, group, batches.count(batch_size))
    for users, positives, negatives in epoch:
        terms = model.loss(users.to(device), positives.to(device), negatives.to(device))
        loss = sum(terms.values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        distributed.average_gradients(model, group)
        optimizer.step()
        if on_step is not None:
            on_step()
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value.detach()
        n_batches += 1
    totals = distributed.all_sum({"batches": n_batches, **{k: float(v) for k, v in sums.items()}}, group)
    n_batches = totals.pop("batches")
    return {key: value / n_batches for key, value in totals.items()}


def evaluate(evaluator, model: Recommender) -> dict[str, float]:
    """``evaluator``'s metrics of ``model``: in a data-parallel run each rank ranks its share of
    the user batches and every rank gets the (exact) whole."""
    group = distributed.current()
    return evaluator.evaluate(model.scorer(), shard=(group.rank, group.size),
                              gather=lambda mine: distributed.gather_batches(mine, group))


def _train(config: RunConfig, dataset: Dataset, model: Recommender, run_dir: Path, device: torch.device,
           resuming: bool, progress: bool) -> RunResult:
    generator = torch.Generator().manual_seed(config.seed)
    state = TrainState()
    optimizer = scheduler = None
    if model.trainable:
        optimizer = optimizer_for(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda epoch: config.lr_decay ** (epoch / config.lr_decay_step))
    if resuming:
        checkpoint = load_checkpoint(run_dir, device)
        load_model_state(model, checkpoint["model_state"], run_dir / CHECKPOINT_FILE)
        if optimizer is not None:
            optimizer.load_state_dict(checkpoint["optimizer_state"])
            scheduler.load_state_dict(checkpoint["scheduler_state"])
        saved_state = {k: v for k, v in checkpoint["train_state"].items() if k != "finished"}  # older checkpoints
        state = TrainState(**saved_state)
        state.best_model_state = checkpoint["best_model_state"] if state.best_score > -math.inf else None
        _restore_rng(checkpoint["rng"], generator)
        log.info("resuming %s from epoch %d", run_dir, state.epoch)
    log.info("%s: %d users, %d items, %d/%d/%d train/valid/test; model %s %s on %s (%s propagation)",
             dataset.name, dataset.n_users, dataset.n_items, len(dataset.train), len(dataset.valid),
             len(dataset.test), config.model, config.model_params, device, backend_of(model))

    valid_eval = split_evaluator(dataset, "valid", config.ks, config.eval_batch_size, device)
    test_eval = split_evaluator(dataset, "test", config.ks, config.eval_batch_size, device,
                                mask_valid=config.mask_valid_in_test)

    def payload(keep: bool = True) -> dict[str, Any]:
        """Everything a resume needs; with ``keep``, as copies safe to hold while training goes on
        (a checkpoint written at once needs no copy of the optimiser state)."""
        optimizer_state = optimizer.state_dict() if optimizer else None
        return {
            "model_state": _cpu_state(model, copy=keep),
            "optimizer_state": copy.deepcopy(optimizer_state) if keep else optimizer_state,
            "scheduler_state": scheduler.state_dict() if scheduler else None,
            # not dataclasses.asdict: it deep-copies best_model_state too (1.1 GB on Elec) only to drop it
            "train_state": {f.name: copy.deepcopy(getattr(state, f.name)) for f in dataclasses.fields(state)
                            if f.name != "best_model_state"},
            "best_model_state": state.best_model_state or _cpu_state(model, copy=keep),
            "rng": _rng_states(generator),
        }

    def checkpoint_now() -> None:
        save_checkpoint(run_dir, payload(keep=False))

    written = False  # whether the checkpoint on disk holds the final state already
    if model.trainable:
        written = _fit(config, dataset, model, optimizer, scheduler, generator, state, valid_eval, run_dir, device,
                       checkpoint_now, payload, progress)
    else:
        state.best_model_state = _cpu_state(model)
    if not written:
        checkpoint_now()

    load_model_state(model, state.best_model_state)
    model.eval()
    valid = evaluate(valid_eval, model)
    test = evaluate(test_eval, model)
    metrics = {
        "dataset": dataset.name,
        "model": config.model,
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "valid": valid,
        "test": test,
    }
    write_metrics(run_dir, metrics)
    write_history(run_dir, state.history)
    log.info("best epoch %d | valid %s | test %s", state.best_epoch,
             _fmt(valid, ["recall@20", "ndcg@20"]), _fmt(test, ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]))
    return RunResult(run_dir, metrics, state.history)


def _diverged(loss: float, epoch: int, run_dir: Path, unsaved: dict[str, Any] | None, on_disk: int | None,
              history: list[dict[str, Any]]) -> TrainingFailed:
    """A non-finite loss: keep the last finished (finite) epoch on disk and say where it is.
    No metrics are written, so the run never reads as finished."""
    if unsaved is not None:
        save_checkpoint(run_dir, unsaved)
        write_history(run_dir, history)
        on_disk = epoch - 1
    where = (f"the last good checkpoint is {run_dir / CHECKPOINT_FILE} (epoch {on_disk})" if on_disk
             else "no epoch finished before it, so nothing was saved")
    return TrainingFailed(f"training diverged: the loss is {loss} at epoch {epoch}; {where}. "
                          f"Retrain with a lower learning rate (--set lr=...)")


#: epochs shorter than this get no steps bar
STEP_BAR_SECONDS = 5


def _fit(config, dataset, model, optimizer, scheduler, generator, state: TrainState, valid_eval, run_dir,
         device, checkpoint_now, payload, progress) -> bool:
    """Train until the epoch limit or early stopping; returns whether the checkpoint on disk
    holds the final state."""
    batches = BPRBatches(dataset.train, dataset.n_items, generator)
    progress = progress and distributed.current().writes  # one set of bars per job: rank 0's
    bar = tqdm(total=config.epochs, initial=state.epoch, desc=f"{config.model}@{dataset.name}",
               unit="epoch", disable=not progress, dynamic_ncols=True, leave=False)
    # Steps within an epoch, shown only where an epoch is long (an Elec-size MGCN epoch is minutes).
    step_bar = tqdm(total=steps_per_epoch(batches, config.batch_size), desc="  steps", unit="step", leave=False,
                    disable=not progress, dynamic_ncols=True, delay=STEP_BAR_SECONDS)
    # The state at the end of the last finished epoch, kept in memory between checkpoints, so a
    # stop mid-epoch saves it instead of losing the epochs since the last checkpoint.
    unsaved: dict[str, Any] | None = None
    on_disk = state.epoch or None  # the epoch the checkpoint file holds (a resumed run's start)
    previous_handler = _install_sigterm_handler()
    try:
        first = state.epoch + 1
        for epoch in range(first, config.epochs + 1):
            started = time.perf_counter()
            if epoch > first:  # reset() draws the bar at once, whatever its delay
                step_bar.reset()
            losses = train_epoch(model, optimizer, batches, config.batch_size, device, on_step=step_bar.update)
            scheduler.step()
            record: dict[str, Any] = {"epoch": epoch}
            record.update({f"loss_{k}": v for k, v in losses.items()})
            record["loss"] = sum(losses.values())
            record["lr"] = optimizer.param_groups[0]["lr"]
            record["train_seconds"] = round(time.perf_counter() - started, 3)
            if record["train_seconds"] < STEP_BAR_SECONDS:
                step_bar.disable = True  # short epochs: the bar's delay counts from its creation, not per epoch
            if not math.isfinite(record["loss"]):
                raise _diverged(record["loss"], epoch, run_dir, unsaved, on_disk, state.history)
            state.epoch = epoch
            epoch_line = None

            if epoch % config.eval_every == 0:
                model.eval()
                started = time.perf_counter()
                valid = evaluate(valid_eval, model)
                record["eval_seconds"] = round(time.perf_counter() - started, 3)
                record.update({f"valid_{k}": v for k, v in valid.items()})
                record.update(model.training_diagnostics())
                score = valid[config.valid_metric]
                improved = score > state.best_score
                if improved:
                    state.best_score, state.best_epoch, state.stale_evals = score, epoch, 0
                    state.best_model_state = _cpu_state(model)
                else:
                    state.stale_evals += 1
                epoch_line = ("epoch %4d | loss %.4f | valid %s%s | %.1fs+%.1fs", epoch, record["loss"],
                              _fmt(valid, ["recall@20", "ndcg@20"]), " *" if improved else "",
                              record["train_seconds"], record["eval_seconds"])
                bar.set_postfix(loss=f"{record['loss']:.4f}", best=f"{state.best_score:.4f}@{state.best_epoch}")
            state.history.append(record)
            bar.update(1)
            stop_early = state.stale_evals > config.patience
            last = stop_early or epoch == config.epochs
            if epoch % config.checkpoint_every == 0 or last:
                checkpoint_now()
                write_history(run_dir, state.history)
                unsaved, on_disk = None, epoch
            elif distributed.current().writes:  # a copy of model and optimiser: 3.3 GB for an Elec MGCN
                unsaved = payload()
            if epoch_line:  # logged once the epoch is kept: a stop from here on saves it
                log.info(*epoch_line)
            if stop_early:
                log.info("early stop at epoch %d: no %s gain in %d evaluations", epoch, config.valid_metric,
                         state.stale_evals)
                break
    except (KeyboardInterrupt, _Terminated) as stop:
        step_bar.close()
        bar.close()
        raise _stopped(stop, run_dir, unsaved, on_disk) from None
    finally:
        step_bar.close()
        bar.close()
        _restore_sigterm_handler(previous_handler)
    if state.best_model_state is None:  # never evaluated (eval_every > epochs)
        state.best_epoch, state.best_model_state = state.epoch, _cpu_state(model)
        return False
    return on_disk == state.epoch
