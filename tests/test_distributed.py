"""Data-parallel training on torch.distributed: a real 2-process CPU run (gloo, localhost) started
through 'synergraph train --nproc 2', and the sharding and sharded evaluation it relies on."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch

from dgl_synergraph import load_run
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.training.distributed import Group, launcher_command, shard
from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]


def _run(command, timeout=300):
    """Run ``command``; on timeout kill it and every process below it (torchrun starts each rank
    in a session of its own, so killing the launcher alone left the ranks running, holding the
    output pipes open), then fail."""
    env = child_env(SYNERGRAPH_DIST_TIMEOUT="60")
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for child in [*psutil.Process(process.pid).children(recursive=True), process]:
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        process.communicate()
        raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _cli(*args, timeout=300):
    return _run([sys.executable, "-m", "cli.main", *args], timeout)


def test_batches_are_dealt_disjointly_in_equal_numbers():
    for n_batches in (7, 8, 1):
        shares = [list(shard(range(n_batches), Group(rank, 2), n_batches)) for rank in (0, 1)]
        assert len(shares[0]) == len(shares[1]) == n_batches // 2
        assert not set(shares[0]) & set(shares[1])
        assert sorted(shares[0] + shares[1]) == list(range(n_batches - n_batches % 2))


def test_sharded_evaluation_equals_the_whole_exactly(tiny):
    evaluator = split_evaluator(tiny, "test", [5, 10], 16, "cpu")  # several user batches
    scores = torch.randn(tiny.n_users, tiny.n_items, generator=torch.Generator().manual_seed(0))
    score = lambda users: scores[users].clone()  # noqa: E731
    whole = evaluator.evaluate(score)
    parts = [evaluator.batch_sums(score, range(rank, evaluator.n_batches, 3)) for rank in range(3)]
    merged = {k: v for part in parts for k, v in part.items()}
    assert evaluator.n_batches > 3
    for rank in range(3):
        assert evaluator.evaluate(score, shard=(rank, 3), gather=lambda mine: merged) == whole


def test_a_two_process_run_trains_and_its_metrics_equal_a_single_process_evaluation(tiny_dir, tmp_path):
    out = tmp_path / "dp"
    result = _cli("train", "--nproc", "2", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--epochs", "6",
                  "--out", str(out), "--set", "embedding_dim=16", "--set", "batch_size=64", "--set", "lr=0.01",
                  "--quiet")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("lightgcn on tiny: best epoch") == 1  # rank 0 reports
    assert (out / "train.log").is_file() and (out / "train.rank1.log").is_file()
    with open(out / "history.csv") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    assert len(losses) == 6 and losses[-1] < losses[0]  # training loss falls
    metrics = json.loads((out / "metrics.json").read_text())
    single = load_run(out, device="cpu").evaluate("test", ks=[10, 20, 50])
    assert metrics["test"] == single  # sharded evaluation == single-process evaluation, exactly
    # the checkpoint resumes with a different number of processes
    resumed = _cli("train", "--resume", str(out), "--epochs", "7", "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((out / "metrics.json").read_text())["epochs_run"] == 7


def test_a_failing_rank_ends_the_job_with_an_error_not_a_hang(tiny_dir, tmp_path):
    result = _cli("train", "--nproc", "2", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--epochs", "2",
                  "--out", str(tmp_path / "bad"), "--set", "knn_k=500", "--model", "mgcn", timeout=240)
    assert result.returncode != 0
    assert "Error: knn_k: must be between 1 and 80" in result.stdout + result.stderr
    assert not (tmp_path / "bad" / "metrics.json").exists()


def _torchrun(nproc, *args, timeout=300):
    """``cli.main`` started by torch's launcher directly, as ``torchrun --nproc-per-node N`` does."""
    return _run(launcher_command(nproc, list(args)), timeout)


TINY_RUN = ["--dataset", "tiny", "--epochs", "3", "--set", "embedding_dim=16", "--set", "batch_size=64", "--quiet"]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device"))])
def test_a_one_process_group_runs_every_collective_and_trains_exactly_as_without_one(tiny_dir, tmp_path, device):
    """torchrun with one process joins a real process group (gloo on CPU, nccl on a GPU), so every
    collective of a data-parallel run runs, on one machine; the result equals the plain run."""
    common = [*TINY_RUN, "--data-dir", str(tiny_dir), "--device", device]
    grouped = _torchrun(1, "train", *common, "--out", str(tmp_path / "grouped"))
    assert grouped.returncode == 0, grouped.stdout + grouped.stderr
    plain = _cli("train", *common, "--out", str(tmp_path / "plain"))
    assert plain.returncode == 0, plain.stderr
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("grouped", "plain")]
    if device == "cpu":
        assert metrics[0]["test"] == metrics[1]["test"] and metrics[0]["valid"] == metrics[1]["valid"]
    else:  # the GPU's atomic adds may sum in another order
        assert metrics[0]["test"] == pytest.approx(metrics[1]["test"], rel=1e-5)


@pytest.mark.skipif(torch.cuda.device_count() != 1, reason="needs exactly one CUDA device")
def test_more_processes_than_gpus_is_one_clear_error(tiny_dir, tmp_path):
    result = _cli("train", "--nproc", "2", *TINY_RUN, "--data-dir", str(tiny_dir), "--device", "cuda",
                  "--out", str(tmp_path / "two"))
    assert result.returncode != 0
    assert "on cuda each process needs its own GPU, and this host has 1" in result.stdout + result.stderr
    assert not (tmp_path / "two" / "metrics.json").exists()


def test_a_row_sparse_gradient_is_averaged_as_its_dense_gradient(tmp_path):
    """FREEDOM's tables get a sparse gradient of the batch's rows; the ranks' rows differ, so it is
    made dense before the all-reduce (one gloo process here: the average is the gradient itself)."""
    import torch.distributed as dist

    from dgl_synergraph.training.distributed import average_gradients

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        model = torch.nn.Linear(3, 4)
        model.weight.grad = torch.sparse_coo_tensor(torch.tensor([[1, 3]]), torch.ones(2, 3), (4, 3),
                                                    is_coalesced=True)
        dense = model.weight.grad.to_dense()
        average_gradients(model, Group(0, 1, joined=True))
        assert not model.weight.grad.is_sparse and torch.equal(model.weight.grad, dense)
        assert torch.equal(model.bias.grad, torch.zeros(4))  # no gradient counts as zero
    finally:
        dist.destroy_process_group()
