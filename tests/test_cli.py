"""The CLI end to end on a tiny generated dataset, through Click's test runner."""

import json

import pytest
from click.testing import CliRunner

from cli.main import app


@pytest.fixture(scope="module")
def trained_run(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lgcn"
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--model", "lightgcn",
                                      "--epochs", "15", "--out", str(out), "--quiet", "--set", "n_layers=2",
                                      "--set", "embedding_dim=16"])
    assert result.exit_code == 0, result.output
    return out, result.output


def test_train_writes_a_complete_run_directory(trained_run):
    out, output = trained_run
    assert {"config.json", "metrics.json", "history.csv", "checkpoint.pt", "train.log"} <= {p.name for p in out.iterdir()}
    assert "test" in output and "recall" in output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lightgcn" and metrics["dataset"] == "tiny"
    assert 1 <= metrics["best_epoch"] <= 15
    for k in (10, 20, 50):
        for name in ("recall", "ndcg", "precision", "map", "hit"):
            assert f"{name}@{k}" in metrics["test"] and f"{name}@{k}" in metrics["valid"]
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["model_params"] == {"embedding_dim": 16, "n_layers": 2, "reg_weight": 1e-4}
    assert set(config["data"]["checksums"]) == {"tiny.inter", "image_feat.npy", "text_feat.npy"}
    assert {"torch", "dgl", "python"} <= set(config["versions"])
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 16 and "valid_recall@20" in history[0]
    from dgl_synergraph.utils import umask

    for name in ("config.json", "metrics.json", "history.csv", "checkpoint.pt"):  # written atomically, not owner-only
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask(), name


def test_eval_json_reproduces_the_recorded_test_metrics(trained_run):
    out, _ = trained_run
    result = CliRunner().invoke(app, ["eval", "--run", str(out), "--k", "20", "--json"])
    assert result.exit_code == 0, result.output
    got = json.loads(result.output)
    recorded = json.loads((out / "metrics.json").read_text())["test"]
    assert set(got) == {"recall@20", "ndcg@20", "precision@20", "map@20", "hit@20"}
    assert all(got[k] == recorded[k] for k in got)
    valid = json.loads(CliRunner().invoke(app, ["eval", "--run", str(out), "--split", "valid", "--json"]).output)
    assert valid == json.loads((out / "metrics.json").read_text())["valid"]


def test_datasets_and_models_listings(tiny_dir):
    result = CliRunner().invoke(app, ["datasets", "--data-dir", str(tiny_dir)])
    assert result.exit_code == 0 and "tiny" in result.output and "image,text" in result.output
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0 and "lightgcn" in result.output and "n_layers=3" in result.output
    # SynerGraph's top-K depends on the dataset; the listing must not hide that
    synergraph = result.output.split("synergraph:")[1].split("\n\n")[0]
    knn_line = next(line for line in synergraph.splitlines() if line.strip().startswith("knn_k="))
    assert "knn_k=30" in knn_line and "baby: 10" in knn_line and "neighbours per item" in knn_line


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--model", "nope"], "unknown model 'nope'"),
        (["train", "--dataset", "missing", "--data-dir", "{tiny}"], "no dataset 'missing'"),
        (["train", "--set", "epochs=0"], "config field 'epochs'"),
        (["train", "--set", "ks=[0]"], "config field 'ks'"),
        (["train", "--set", "n_layer=2"], "has no setting 'n_layer'"),
        (["train", "--set", "n_layers=two"], "lightgcn.n_layers: expected int"),
        (["train", "--set", "oops"], "expected key=value"),
        (["train", "--epochs", "0"], "'--epochs'"),
        (["train", "--device", "tpu"], "'--device'"),
        (["train", "--config", "{tiny}/absent.yaml"], "--config"),
        (["eval", "--run", "{tiny}/no-such-run"], "no such run directory"),
        (["eval", "--run", "{tiny}", "--k", "0"], "'--k'"),
        (["eval", "--run", "{tiny}"], "config.json: missing"),
        (["train", "--dataset", "tiny", "--data-dir", "{tiny}", "--out", "/proc/synergraph-run"], "--out /proc/synergraph-run: cannot create"),
    ],
)
def test_bad_input_gives_one_error_line_and_nonzero_exit(tiny_dir, args, message):
    args = [a.replace("{tiny}", str(tiny_dir)) for a in args]
    result = CliRunner().invoke(app, args)
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert message in lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_existing_run_directory_is_not_overwritten(trained_run, tiny_dir):
    out, _ = trained_run
    before = (out / "metrics.json").read_text()
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--out", str(out)])
    assert result.exit_code == 1 and "already holds a run" in result.output
    assert (out / "metrics.json").read_text() == before
