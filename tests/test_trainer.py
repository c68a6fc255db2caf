"""The shared training loop: known behaviour, reproducibility, resume, atomic files."""

import json

import pytest

from dgl_synergraph import build_config
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.training import resume, train
from dgl_synergraph.utils import atomic_write


def _config(tiny_dir, **settings):
    base = {"dataset": "tiny", "data_dir": str(tiny_dir), "batch_size": 256,
            "lr": 0.01, "epochs": 30, "patience": 50, "checkpoint_every": 1}
    if settings.get("model") != "mostpop":  # the one model without embeddings
        base["embedding_dim"] = 16
    return build_config({**base, **settings})


def test_lightgcn_loss_falls_and_beats_mostpop(tiny_dir, tiny, tmp_path):
    lgcn = train(_config(tiny_dir, model="lightgcn"), out=tmp_path / "lgcn", dataset=tiny, progress=False)
    pop = train(_config(tiny_dir, model="mostpop"), out=tmp_path / "pop", dataset=tiny, progress=False)
    losses = [row["loss"] for row in lgcn.history]
    assert losses[-1] < 0.8 * losses[0]
    assert lgcn.metrics["test"]["recall@20"] > pop.metrics["test"]["recall@20"] + 0.1
    assert pop.metrics["best_epoch"] == 0 and pop.history == []


def test_bpr_learns(tiny_dir, tiny, tmp_path):
    bpr = train(_config(tiny_dir, model="bpr", epochs=40), out=tmp_path / "bpr", dataset=tiny, progress=False)
    first, best = bpr.history[0]["valid_recall@20"], max(r["valid_recall@20"] for r in bpr.history)
    assert best > first + 0.1


def test_same_seed_same_run_and_resume_is_exact(tiny_dir, tiny, tmp_path):
    straight = train(_config(tiny_dir, epochs=6), out=tmp_path / "a", dataset=tiny, progress=False)
    again = train(_config(tiny_dir, epochs=6), out=tmp_path / "b", dataset=tiny, progress=False)
    assert straight.metrics == again.metrics

    train(_config(tiny_dir, epochs=3), out=tmp_path / "c", dataset=tiny, progress=False)
    resumed = resume(tmp_path / "c", epochs=6, progress=False)
    assert resumed.metrics["test"] == straight.metrics["test"]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    saved = json.loads((tmp_path / "c" / "config.json").read_text())["config"]
    assert saved["epochs"] == 6  # the raised limit is recorded, so the run's config reproduces it

    other_seed = train(_config(tiny_dir, epochs=6, seed=1), out=tmp_path / "d", dataset=tiny, progress=False)
    assert other_seed.metrics["test"] != straight.metrics["test"]


def test_early_stopping_and_best_epoch_selection_use_validation(tiny_dir, tiny, tmp_path):
    run = train(_config(tiny_dir, epochs=200, patience=3, lr=0.05), out=tmp_path / "es", dataset=tiny, progress=False)
    scores = [r["valid_recall@20"] for r in run.history]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    assert run.metrics["best_epoch"] == run.history[best]["epoch"]
    assert len(run.history) - 1 - best == 4  # stopped after patience + 1 evaluations without gain
    assert run.metrics["valid"]["recall@20"] == pytest.approx(scores[best])
    saved = json.loads((tmp_path / "es" / "metrics.json").read_text())
    assert saved["epochs_run"] == len(run.history) < 200


def test_config_layers_and_validation():
    config = build_config({"epochs": 5, "n_layers": 1}, {"epochs": 7})
    assert config.epochs == 7 and config.model_params == {"embedding_dim": 64, "n_layers": 1, "reg_weight": 1e-4}
    assert build_config({}).model_params == {"embedding_dim": 64, "n_layers": 3, "reg_weight": 1e-4}
    with pytest.raises(ConfigError, match="valid_metric"):
        build_config({"valid_metric": "auc@20"})
    with pytest.raises(ConfigError, match="has no setting 'n_layers'"):
        build_config({"model": "bpr", "n_layers": 2})


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_train_epoch_reports_each_step_it_takes(tiny):
    import torch

    from dgl_synergraph.training.sampler import BPRBatches
    from dgl_synergraph.training.trainer import model_for, optimizer_for, steps_per_epoch, train_epoch

    config = build_config({"dataset": "tiny", "model": "lightgcn", "batch_size": 64})
    model = model_for(config, tiny, torch.device("cpu"))
    batches = BPRBatches(tiny.train, tiny.n_items, torch.Generator().manual_seed(0))
    steps = []
    train_epoch(model, optimizer_for(model, config), batches, config.batch_size, torch.device("cpu"),
                on_step=lambda: steps.append(1))
    assert len(steps) == steps_per_epoch(batches, config.batch_size) == -(-len(tiny.train) // 64) > 1


def test_resuming_removes_the_partial_checkpoint_a_killed_writer_left(tiny_dir, tiny, tmp_path):
    """SIGKILL (the OOM killer, a launcher's last resort) stops a checkpoint write before its
    cleanup; the run's next start removes that temp file and nothing else."""
    run = tmp_path / "run"
    train(_config(tiny_dir, epochs=2), out=run, dataset=tiny, progress=False)
    partial, unrelated = run / ".checkpoint.pt.k2j_9x0q", run / ".notes.k2j_9x0q"
    partial.write_bytes(b"half a checkpoint")
    unrelated.write_text("mine")
    resume(run, epochs=3, progress=False)
    assert not partial.exists() and unrelated.read_text() == "mine"
    assert ".checkpoint.pt.k2j_9x0q, a file an interrupted write left behind" in (run / "train.log").read_text()


def test_the_last_epoch_is_checkpointed_whatever_checkpoint_every_says(tiny_dir, tiny, tmp_path):
    from dgl_synergraph.training.rundir import load_checkpoint

    train(_config(tiny_dir, epochs=3, checkpoint_every=50), out=tmp_path / "run", dataset=tiny, progress=False)
    assert load_checkpoint(tmp_path / "run")["train_state"]["epoch"] == 3


def test_short_epochs_draw_no_steps_bar(tiny_dir, tiny, tmp_path, capsys):
    """The steps bar is for epochs of minutes; a run of short epochs shows only the epochs bar."""
    train(_config(tiny_dir, epochs=3), out=tmp_path / "run", dataset=tiny, progress=True)
    drawn = capsys.readouterr().err
    assert "lightgcn@tiny" in drawn and "steps" not in drawn
