"""Guarded training: a diverging run stops with the last good checkpoint named and no metrics,
and the same seed and settings give identical results (fp32 and bf16)."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config
from dgl_synergraph.training.trainer import TrainingFailed
from dgl_synergraph.training import rundir, train, trainer


@pytest.mark.filterwarnings("ignore:Detected call of .lr_scheduler.step")
def test_a_nan_loss_stops_the_run_and_names_the_last_good_checkpoint(tiny, tiny_dir, tmp_path, monkeypatch):
    real_epoch, calls = trainer.train_epoch, []

    def diverging_at_epoch_4(*args, **kwargs):
        losses = real_epoch(*args, **kwargs)
        calls.append(1)
        return {key: (math.nan if len(calls) == 4 else value) for key, value in losses.items()}

    monkeypatch.setattr(trainer, "train_epoch", diverging_at_epoch_4)
    out = tmp_path / "run"
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "embedding_dim": 8, "epochs": 10,
                           "checkpoint_every": 50})
    with pytest.raises(TrainingFailed) as stop:
        train(config, out=out, dataset=tiny, progress=False)
    message = str(stop.value)
    assert "loss is nan at epoch 4" in message
    assert f"the last good checkpoint is {out / 'checkpoint.pt'} (epoch 3)" in message
    checkpoint = rundir.load_checkpoint(out)
    assert checkpoint["train_state"]["epoch"] == 3
    assert all(torch.isfinite(v).all() for v in checkpoint["model_state"].values())
    assert not (out / "metrics.json").exists()  # never reads as a finished run
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.filterwarnings("ignore:Detected call of .lr_scheduler.step")
def test_a_nan_loss_in_the_first_epoch_says_nothing_was_saved(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "train_epoch", lambda *args, **kwargs: {"bpr": math.inf})
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--epochs", "3",
                                      "--quiet", "--out", str(tmp_path / "run")])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1
    assert lines[0].startswith("Error: training diverged: the loss is inf at epoch 1; no epoch finished")
    assert not (tmp_path / "run" / "metrics.json").exists()


@pytest.mark.parametrize("model, precision", [("lightgcn", "fp32"), ("mgcn", "fp32"), ("mgcn", "bf16"),
                                              ("freedom", "bf16"), ("siger", "fp32")])
def test_the_same_seed_gives_identical_metrics(tiny, tiny_dir, tmp_path, monkeypatch, model, precision):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": model, "precision": precision,
                           "embedding_dim": 8, "epochs": 4} | ({} if model == "lightgcn" else {"knn_k": 5}))
    results = []
    for name in ("first", "second"):
        train(config, out=tmp_path / name, dataset=tiny, progress=False)
        results.append(json.loads((tmp_path / name / "metrics.json").read_text()))
        results[-1]["history"] = [{k: v for k, v in row.items() if "seconds" not in k}
                                  for row in rundir.read_history(tmp_path / name)]
    assert results[0] == results[1]
