"""Stopping a run with SIGINT or SIGTERM keeps its finished epochs, and resuming gives the same
metrics as a run that was never stopped."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-c", "import sys; from cli.main import main; main(sys.argv[1:])", *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DGLBACKEND": "pytorch", "OMP_NUM_THREADS": "1"}, **kwargs)


def _train_args(tiny_dir, out):
    # checkpoints only every 50 epochs: without the stop handling, a stop would lose every epoch
    return ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--model", "lightgcn", "--epochs", "60",
            "--out", str(out), "--set", "embedding_dim=8", "--set", "patience=1000", "--set", "checkpoint_every=50",
            "--set", "batch_size=128", "--quiet"]


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signalled_run_resumes_to_the_same_metrics(tiny_dir, tmp_path, signum, code):
    stopped = tmp_path / "stopped"
    process = _cli(*_train_args(tiny_dir, stopped))
    log = stopped / "train.log"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait until the second epoch has finished
        if log.is_file() and "epoch    2 |" in log.read_text():
            break
        time.sleep(0.02)
    process.send_signal(signum)
    out, err = process.communicate(timeout=120)
    assert process.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("Error: stopped by ") and f"--resume {stopped}" in lines[-1], err
    assert "Traceback" not in err
    saved_epochs = len((stopped / "history.csv").read_text().splitlines()) - 1
    assert 2 <= saved_epochs < 60 and not (stopped / "metrics.json").exists()

    resumed = _cli("train", "--resume", str(stopped), "--quiet")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    straight = _cli(*_train_args(tiny_dir, tmp_path / "straight"))
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    got = json.loads((stopped / "metrics.json").read_text())
    expected = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert got == expected


def test_a_signalled_sweep_resumes_in_the_cell_it_was_in(tiny_dir, tmp_path):
    def sweep(out):
        return _cli("sweep", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--model", "lightgcn",
                    "--grid", "n_layers=1,2", "--seeds", "1", "--epochs", "30", "--out", str(out), "--quiet",
                    "--set", "embedding_dim=8", "--set", "patience=1000", "--set", "checkpoint_every=50",
                    "--set", "batch_size=128")

    stopped = tmp_path / "stopped"
    process = sweep(stopped)
    second = stopped / "cells" / "n_layers=2" / "seed999" / "train.log"
    deadline = time.time() + 240
    while time.time() < deadline:  # the first cell is finished and the second has two epochs
        if second.is_file() and "epoch    2 |" in second.read_text():
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert (stopped / "cells" / "n_layers=1" / "seed999" / "metrics.json").is_file()
    assert (second.parent / "checkpoint.pt").is_file() and not (second.parent / "metrics.json").exists()
    finished_first = (stopped / "cells" / "n_layers=1" / "seed999" / "metrics.json").stat().st_mtime_ns

    rerun = sweep(stopped)
    assert rerun.wait(timeout=300) == 0, rerun.stderr.read()
    # the finished cell was not trained again; the stopped one resumed from its checkpoint
    assert (stopped / "cells" / "n_layers=1" / "seed999" / "metrics.json").stat().st_mtime_ns == finished_first
    assert f"resuming {second.parent}" in second.parent.joinpath("train.log").read_text()
    straight = sweep(tmp_path / "straight")
    assert straight.wait(timeout=300) == 0, straight.stderr.read()
    got = json.loads((stopped / "sweep.json").read_text())
    expected = json.loads((tmp_path / "straight" / "sweep.json").read_text())
    assert [c["valid"] for c in got["cells"]] == [c["valid"] for c in expected["cells"]]
    assert got["seed_runs"][0]["test"] == expected["seed_runs"][0]["test"]
