"""Data-parallel training over ``torch.distributed``, started by torch's launcher:

    torchrun --nproc-per-node 2 -m cli.main train --dataset baby ...
    synergraph train --nproc 2 --dataset baby ...          # starts the launcher itself

Every process (rank) holds the whole graph and model (an Elec-size catalogue fits one host). Each
epoch's BPR batches are drawn identically on every rank (same seed) and dealt round-robin, so the
ranks train disjoint shards; the last ``len % world`` batches of an epoch are left out so every
rank takes the same number of steps. After each backward pass the gradients are averaged with
``all_reduce`` (what DistributedDataParallel does; done here explicitly because a fine-tuned
feature table writes its gradient in place, outside autograd's hooks), so every rank applies the
same Adam step and the parameters stay identical. The effective batch is ``world x batch_size``
with the learning rate unchanged, and an epoch has ``1/world`` of the steps.

Evaluation is sharded the same way: user batches are dealt round-robin, each rank ranks its
batches, and the per-batch metric sums are gathered and added in batch order, so every rank gets
exactly the single-process metrics (and the same early-stopping decision). Only rank 0 writes the
run directory; rank r logs to ``train.rank<r>.log``. Backend ``gloo`` on CPU, ``nccl`` on CUDA;
a rank that dies makes the others fail at the next collective within ``TIMEOUT`` (torchrun also
stops the remaining workers) instead of hanging.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Callable, Iterable, Iterator

import torch
import torch.distributed as dist

from dgl_synergraph.errors import ConfigError

TIMEOUT = timedelta(seconds=int(os.environ.get("SYNERGRAPH_DIST_TIMEOUT", "300")))


@dataclass(frozen=True)
class Group:
    rank: int = 0
    size: int = 1
    joined: bool = False  # a torch.distributed process group: collectives run (also with one process)

    @property
    def writes(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0


SINGLE = Group()
_current = SINGLE


def current() -> Group:
    """The group this process joined (``SINGLE`` when it did not)."""
    return _current


def rank_zero_only(write: Callable) -> Callable:
    """A run-directory writer that does nothing on ranks other than 0."""
    @functools.wraps(write)
    def guarded(*args, **kwargs):
        if _current.writes:
            return write(*args, **kwargs)
        return None
    return guarded


def launched() -> bool:
    """Whether this process was started by torchrun (which sets ``WORLD_SIZE`` and ``RANK``),
    even with one process: a 1-process group runs the collectives, which checks them on one GPU."""
    return "WORLD_SIZE" in os.environ and "RANK" in os.environ


def join(device: torch.device) -> Group:
    """This process's group: joins torchrun's process group on first use (gloo on CPU, nccl on
    CUDA, each rank on its local GPU); a single process without torchrun is ``SINGLE``."""
    global _current
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            local_rank, visible = int(os.environ.get("LOCAL_RANK", "0")), torch.cuda.device_count()
            if local_rank >= visible:  # nccl needs one GPU per process
                raise ConfigError(f"--nproc {os.environ.get('LOCAL_WORLD_SIZE', local_rank + 1)}: on cuda each "
                                  f"process needs its own GPU, and this host has {visible}")
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend, timeout=TIMEOUT)
        # Tear the group down before the interpreter does: gloo's threads left to static
        # destructors at exit can abort a finished rank ("terminate called without an active
        # exception"), which fails a run that trained fine.
        atexit.register(leave)
    _current = Group(dist.get_rank(), dist.get_world_size(), joined=True)
    return _current


def broadcast(value: Any, group: Group) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not group.joined:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(group: Group) -> None:
    if group.joined:
        dist.barrier()


def shard(batches: Iterable, group: Group, n_batches: int) -> Iterator:
    """This rank's share of an epoch: batches ``rank, rank + size, ...`` of the first
    ``n_batches - n_batches % size`` (every rank takes the same number of steps)."""
    usable = n_batches - n_batches % group.size
    for index, batch in enumerate(batches):
        if index >= usable:
            return
        if index % group.size == group.rank:
            yield batch


def average_gradients(model: torch.nn.Module, group: Group) -> None:
    """Every parameter's gradient averaged over the ranks. A parameter without a gradient on a
    rank (unused by its batch) counts as zero there, so every rank joins the same collectives; it
    then gets an Adam step like any other, where a single process would have skipped it."""
    if not group.joined:
        return
    for param in model.parameters():
        if not param.requires_grad:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        elif param.grad.is_sparse:  # a table projected on the batch's rows: its rows differ per rank
            param.grad = param.grad.to_dense()
        dist.all_reduce(param.grad)
        param.grad.div_(group.size)


def all_sum(values: dict[str, float], group: Group) -> dict[str, float]:
    """Per-key sums over the ranks (loss bookkeeping)."""
    if not group.joined:
        return values
    keys = sorted(values)
    # nccl reduces GPU tensors only
    where = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    total = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=where)
    dist.all_reduce(total)
    return dict(zip(keys, total.tolist()))


def gather_batches(mine: dict[int, Any], group: Group) -> dict[int, Any]:
    """Every rank's ``{batch index: result}`` merged, on every rank."""
    if not group.joined:
        return mine
    parts: list[Any] = [None] * group.size
    dist.all_gather_object(parts, mine)
    merged: dict[int, Any] = {}
    for part in parts:
        merged.update(part)
    return merged


def leave() -> None:
    """Leave torchrun's process group (at exit, registered by :func:`join`)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def exit_rank(code: int | str | None) -> None:
    """End a rank process that joined a process group with exit status ``code``, without tearing
    the group down; returns at once in any other process. gloo's teardown can hang: a two-process
    test run finished, wrote every file, and one rank then sat in ``~ProcessGroupGloo`` at exit,
    joining a worker thread that waited on the group's mutex (gdb). Everything a run writes is
    complete (atomic renames) before this point, so the rank flushes its streams and leaves
    (:func:`leave`, registered at exit, still tears the group down on any other way out)."""
    if not dist.is_initialized():
        return
    if isinstance(code, str):  # sys.exit("message")
        print(code, file=sys.stderr)
        code = 1
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if code is None else int(code))


def launcher_command(nproc: int, cli_args: list[str]) -> list[str]:
    """The command that runs ``synergraph <cli_args>`` in ``nproc`` processes on this host with
    torch's elastic launcher (``torchrun --standalone``)."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "cli.main", *cli_args]


def launch(nproc: int, cli_args: list[str]) -> int:
    """Run :func:`launcher_command`; returns its exit status (non-zero when any rank failed: the
    launcher then stops the others)."""
    import subprocess

    return subprocess.run(launcher_command(nproc, cli_args), check=False).returncode
