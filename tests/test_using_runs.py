"""Using trained runs: recommend (API + CLI), report, sweep selection and resume."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import load_run
from dgl_synergraph import build_config
from dgl_synergraph.errors import DataError
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.reports.report import RunRecord, find_runs, gap_lines, group_rows, sensitivity_points
from dgl_synergraph.training import train
from dgl_synergraph.training.sweep import parse_grid, run_sweep, select_best


@pytest.fixture(scope="module")
def run_dir(tiny_dir, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("rec") / "lgcn"
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "embedding_dim": 16, "epochs": 10, "lr": 0.01})
    train(config, out=out, dataset=tiny, progress=False)
    return out


def test_recommend_matches_evaluator_and_excludes_training_items(run_dir, tiny):
    run = load_run(run_dir)
    users = list(range(tiny.n_users))
    recs = run.recommend(users, k=10, ids="internal")
    train_items = {}
    for u, i in tiny.train:
        train_items.setdefault(int(u), set()).add(int(i))
    evaluator = split_evaluator(tiny, "test", [10], 4096, "cpu")
    top = evaluator.top_items(run.model.scorer(), torch.arange(tiny.n_users))[:, :10]
    for rec in recs:
        assert len(rec.items) == 10 == len(set(rec.items))
        assert not set(rec.items) & train_items.get(rec.user, set())
        assert rec.items == top[rec.user].tolist()
        assert rec.scores == sorted(rec.scores, reverse=True)
    with_seen = run.recommend([0], k=10, exclude_seen=False, ids="internal")[0]
    assert set(with_seen.items) & train_items[0]  # unmasked, the user's own items rank high


def test_recommend_unknown_users_and_score(run_dir, tiny):
    run = load_run(run_dir)
    with pytest.raises(DataError, match="unknown user 9999"):
        run.recommend([9999], k=5)
    fallback = run.recommend([9999], k=5, fallback="popular")[0]
    popular = np.argsort(-tiny.item_popularity(), kind="stable")[:5].tolist()
    assert fallback.fallback and fallback.items == popular
    scores = run.score([0, 1], [3, 4, 5])
    assert scores.shape == (2, 3)
    full = run.score([0, 1])
    np.testing.assert_allclose(scores, full[:, [3, 4, 5]])


def test_recommend_cli_json_table_and_export(run_dir, tmp_path, tiny):
    result = CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--user", "3", "--k", "4", "--json"])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.output)
    assert rec["user"] == "3" and len(rec["items"]) == 4
    table = CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--user", "3", "--k", "4"])
    assert table.exit_code == 0 and "rank" in table.output
    bad = CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--user", "nobody"])
    assert bad.exit_code == 1 and bad.output.startswith("Error: unknown user 'nobody'")
    missing = CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--all"])
    assert missing.exit_code == 2 and "--all needs --out" in missing.output
    out = tmp_path / "all.parquet"
    result = CliRunner().invoke(app, ["recommend", "--run", str(run_dir), "--all", "--out", str(out), "--k", "5"])
    assert result.exit_code == 0, result.output
    frame = pl.read_parquet(out)
    assert frame.height == tiny.n_users * 5 and frame.columns == ["user", "rank", "item", "score"]
    first = frame.filter(pl.col("user") == 3).sort("rank")["item"].to_list()
    assert first == load_run(run_dir).recommend([3], k=5, ids="internal")[0].items


def test_report_groups_seeds_and_writes_plots(tiny_dir, tiny, tmp_path):
    for seed in (1, 2):
        config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "embedding_dim": 8, "epochs": 3, "seed": seed})
        train(config, out=tmp_path / "runs" / f"lgcn-{seed}", dataset=tiny, progress=False)
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": "mostpop"})
    train(config, out=tmp_path / "runs" / "pop", dataset=tiny, progress=False)
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": "bpr", "epochs": 2, "embedding_dim": 8})
    train(config, out=tmp_path / "runs" / "bpr", dataset=tiny, progress=False)
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "epochs": 2, "embedding_dim": 8, "n_layers": 1})
    train(config, out=tmp_path / "runs" / "lgcn-1layer", dataset=tiny, progress=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--out", str(tmp_path / "r" / "report.md")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "report.md").read_text()
    # n_layers=3 varies among lightgcn runs; n_layers=1 and embedding_dim=8 differ from the defaults
    assert "| tiny    | lightgcn | embedding_dim=8, n_layers=3 | 1,2   |" in page
    assert "| tiny    | lightgcn | embedding_dim=8, n_layers=1 | 999   |" in page
    assert "| tiny    | bpr      | embedding_dim=8             | 999   |" in page
    assert "| tiny    | mostpop  | defaults                    | 999   |" in page
    assert " ± " in page and "![training curves](report_curves.png)" in page
    for png in ("report_curves.png", "report_recall20.png"):
        assert (tmp_path / "r" / png).read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert bad.exit_code == 1 and "not a run directory" in bad.output

    # --vary: Recall@20 against a hyperparameter, seeds averaged per value
    lightgcn = [str(tmp_path / "runs" / name) for name in ("lgcn-1", "lgcn-2", "lgcn-1layer")]
    result = CliRunner().invoke(app, ["report", *lightgcn, "--vary", "n_layers", "--out", str(tmp_path / "v" / "k.md")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v" / "k_n_layers.png").read_bytes()[:4] == b"\x89PNG"
    tests = [json.loads((tmp_path / "runs" / name / "metrics.json").read_text())["test"]["recall@20"]
             for name in ("lgcn-1", "lgcn-2", "lgcn-1layer")]
    points = sensitivity_points(find_runs(lightgcn), "n_layers")["lightgcn"]
    assert [p[0] for p in points] == [1, 3] and [p[4] for p in points] == [1, 2]
    assert points[0][2] == pytest.approx(tests[2]) and points[1][2] == pytest.approx((tests[0] + tests[1]) / 2)
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--vary", "n_layers"])
    assert bad.exit_code == 1 and "--vary n_layers" in bad.output and "has no setting" in bad.output


def test_report_rows_list_best_epochs_in_seed_order():
    # Paths sort seed1000 < seed1001 < seed999; the columns must follow the seeds, not the paths.
    def record(seed, best_epoch, recall):
        config = {"dataset": "baby", "model": "lightgcn", "model_params": {}, "seed": seed}
        return RunRecord(Path(f"runs/cell/seed{seed}"), config, {"best_epoch": best_epoch, "test": {"recall@20": recall},
                                                              "valid": {"recall@20": recall}}, [])
    (row,) = group_rows([record(1000, 88, 0.2), record(1001, 90, 0.3), record(999, 63, 0.1)])
    assert row["seeds"] == [999, 1000, 1001]
    assert row["best_epochs"] == [63, 88, 90]
    assert row["valid_recall@20"] == pytest.approx((0.2, 0.1))  # mean and sample std of 0.1, 0.2, 0.3


def test_report_orders_configurations_by_validation_not_test():
    def record(layers, seed, valid, test):
        config = {"dataset": "baby", "model": "lightgcn", "model_params": {"n_layers": layers}, "seed": seed}
        return RunRecord(Path(f"runs/l{layers}/seed{seed}"), config,
                         {"best_epoch": 1, "test": {"recall@20": test}, "valid": {"recall@20": valid}}, [])
    # n_layers=1 wins on test, n_layers=2 on validation: the report must list (and name) n_layers=2 first
    rows = group_rows([record(1, 999, 0.10, 0.50), record(1, 1000, 0.12, 0.50),
                       record(2, 999, 0.20, 0.05), record(2, 1000, 0.20, 0.05)])
    assert [r["params"] for r in rows] == ["n_layers=2", "n_layers=1"]
    assert rows[1]["valid_recall@20"] == pytest.approx((0.11, 0.0141421356))
    # gap of n_layers=1 to the first row: valid 0.11 - 0.20, pooled std sqrt((0.01414^2 + 0) / 2) = 0.01
    (gap,) = gap_lines(rows)
    assert "valid -0.0900 (-9.0 std)" in gap and "test +0.4500" in gap and gap.endswith("test +0.4500")


def test_grid_parsing():
    assert parse_grid(["lr=0.001,0.01", "n_layers=1,2"]) == {"lr": [0.001, 0.01], "n_layers": [1, 2]}
    assert parse_grid([]) == {}
    with pytest.raises(Exception, match="expected key=value1"):
        parse_grid(["lr"])


def test_selection_uses_validation_not_test():
    cells = [
        {"index": 0, "settings": {"a": 1}, "valid": {"recall@20": 0.30}, "test": {"recall@20": 0.90}},
        {"index": 1, "settings": {"a": 2}, "valid": {"recall@20": 0.50}, "test": {"recall@20": 0.10}},
    ]
    assert select_best(cells, "recall@20")["settings"] == {"a": 2}


class FakeTrainer:
    """Writes planted metrics instead of training; can be told to 'crash' at call N."""

    def __init__(self, crash_at=None):
        self.calls, self.crash_at = [], crash_at

    def __call__(self, config, out=None, progress=True):
        self.calls.append((config.model_params.get("n_layers"), config.model_params["reg_weight"], config.seed))
        if self.crash_at is not None and len(self.calls) == self.crash_at:
            raise KeyboardInterrupt
        layers, reg = config.model_params["n_layers"], config.model_params["reg_weight"]
        # n_layers=3 is best on TEST but worst on validation; reg 0.001 wins on validation
        valid = 0.1 * layers + (0.05 if reg == 0.001 else 0) if layers != 3 else 0.01
        test = 0.99 if layers == 3 else valid
        metrics = {"valid": {"recall@20": valid}, "test": {"recall@20": test + config.seed * 1e-6}}
        out.mkdir(parents=True)
        (out / "metrics.json").write_text(json.dumps(metrics))

        class Result:
            pass

        result = Result()
        result.metrics = metrics
        return result


def test_sweep_picks_on_validation_reruns_seeds_and_resumes(tmp_path):
    base = {"dataset": "tiny", "model": "lightgcn", "seed": 7}
    grid = {"n_layers": [1, 2, 3], "reg_weight": [0.0001, 0.001]}
    crashing = FakeTrainer(crash_at=4)
    with pytest.raises(KeyboardInterrupt):
        run_sweep([base], grid, seeds=2, out=tmp_path, train_fn=crashing, progress=False, report=False)
    assert json.loads((tmp_path / "sweep.json").read_text())["cells"].__len__() == 3

    resumed = FakeTrainer()
    summary = run_sweep([base], grid, seeds=2, out=tmp_path, train_fn=resumed, progress=False, report=False)
    # only the 3 unfinished cells and the one extra seed are trained on resume
    # (the 4th cell, n_layers=2 reg=0.001, was interrupted; seed 7 of the winner is that cell)
    assert resumed.calls == [(2, 0.001, 7), (3, 0.0001, 7), (3, 0.001, 7), (2, 0.001, 8)]
    assert summary["selected"]["settings"] == {"n_layers": 2, "reg_weight": 0.001}
    assert [r["seed"] for r in summary["seed_runs"]] == [7, 8]
    assert summary["test_mean_std"]["recall@20"][0] == pytest.approx(0.25 + 7.5e-6)


def test_sweep_without_a_grid_trains_the_given_configuration_on_each_seed(tmp_path):
    base = {"dataset": "tiny", "model": "lightgcn", "seed": 7}
    trainer = FakeTrainer()
    summary = run_sweep([base], {}, seeds=3, out=tmp_path, train_fn=trainer, progress=False, report=False)
    # one cell (the defaults: 3 layers, reg 1e-4) on seed 7, reused as the first seed's run
    assert trainer.calls == [(3, 0.0001, 7), (3, 0.0001, 8), (3, 0.0001, 9)]
    assert summary["selected"]["settings"] == {} and len(summary["cells"]) == 1
    assert summary["test_mean_std"]["recall@20"][0] == pytest.approx(0.99 + 8e-6)
    again = FakeTrainer()
    run_sweep([base], {}, seeds=3, out=tmp_path, train_fn=again, progress=False, report=False)
    assert again.calls == []  # every seed finished: a rerun trains nothing


def test_real_sweep_on_tiny(tiny_dir, tmp_path):
    base = {"dataset": "tiny", "data_dir": str(tiny_dir), "model": "lightgcn", "epochs": 3, "embedding_dim": 8}
    summary = run_sweep([base], {"n_layers": [1, 2], "lr": [0.001, 0.01]}, seeds=2, out=tmp_path, progress=False)
    assert len(summary["cells"]) == 4 and len(summary["seed_runs"]) == 2
    best = max(summary["cells"], key=lambda c: c["valid"]["recall@20"])
    assert summary["selected"]["settings"] == best["settings"]
    assert (tmp_path / "report.md").is_file()


def test_curve_labels_tell_runs_with_the_same_folder_name_apart(tmp_path):
    from dgl_synergraph.reports.report import distinct_labels

    paths = [tmp_path / "scale-mgcn" / "sports", tmp_path / "scale-siger" / "sports", tmp_path / "scale-siger" / "clothing"]
    assert distinct_labels(paths) == ["scale-mgcn/sports", "scale-siger/sports", "clothing"]
    assert distinct_labels([tmp_path / "a", tmp_path / "b"]) == ["a", "b"]
    # each label grows only as far as it must
    assert distinct_labels([Path("runs/sweep/cells/k=1/seed999"), Path("runs/sweep/cells/k=2/seed999"),
                            Path("runs/bpr-seed999")]) == ["k=1/seed999", "k=2/seed999", "bpr-seed999"]


def test_every_run_in_a_plot_gets_its_own_colour_and_line_style():
    from dgl_synergraph.reports.report import run_styles

    for n in (1, 10, 14, 45):
        styles = run_styles(n)
        assert len({(s["color"], s["linestyle"]) for s in styles}) == n, n
    assert {s["linestyle"] for s in run_styles(10)} == {"-"}  # up to 10 runs: plain lines


def test_report_gates_plots_each_purifier_run_and_skips_the_rest(tiny_dir, tiny, tmp_path, monkeypatch):
    from dgl_synergraph.api import load_run
    from dgl_synergraph.reports.report import gate_values

    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    base = {"dataset": "tiny", "data_dir": str(tiny_dir), "epochs": 2, "embedding_dim": 8, "knn_k": 5}
    for name, extra in (("plain", {}), ("normed", {"gate_norm": True})):
        train(build_config(base | {"model": "synergraph"} | extra), out=tmp_path / "runs" / name, dataset=tiny,
              progress=False)
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "epochs": 1, "embedding_dim": 8})
    train(config, out=tmp_path / "runs" / "lightgcn", dataset=tiny, progress=False)
    result = CliRunner().invoke(app, ["report", str(tmp_path / "runs"), "--gates", "--out", str(tmp_path / "g.md")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "g.md").read_text()
    assert (tmp_path / "g_gates.png").read_bytes()[:4] == b"\x89PNG" and "![purifier gate histograms](g_gates.png)" in page
    # one row per purifier run and modality (the LightGCN run has no gates), with the model's own values
    gate_rows = [line for line in page.splitlines() if line.startswith("| ") and ("image" in line or "text" in line)
                 and "%" in line]
    assert len(gate_rows) == 4
    record = find_runs([tmp_path / "runs" / "normed"])[0]
    values = gate_values(record)
    model = load_run(tmp_path / "runs" / "normed").model
    with torch.no_grad():
        model.purifiers["image"](model.item_embedding, model.projections["image"]())
    gate = model.purifiers["image"].last_gate
    assert values["image"].shape == (tiny.n_items * 8,)
    torch.testing.assert_close(torch.as_tensor(values["image"]), gate.flatten())
    assert f"{values['image'].mean():.3f}" in page


def test_the_kept_run_records_read_as_runs_and_match_what_the_docs_say():
    """docs/runs keeps finished runs without checkpoints; the report reads them like run
    directories, and SIGER's bf16 check in docs/results.md quotes exactly these records."""
    root = Path(__file__).resolve().parents[1]
    records = find_runs([root / "docs" / "runs"])
    assert records and all(r.history and "test" in r.metrics for r in records)
    siger = sorted((r for r in records if r.path.parent.name == "baby-siger-bf16"), key=lambda r: r.config["seed"])
    assert [r.config["seed"] for r in siger] == [999, 1000, 1001]
    assert all(r.config["precision"] == "bf16" and r.config["model"] == "siger" for r in siger)
    results = (root / "docs" / "results.md").read_text()
    for record in siger:
        valid, test = record.metrics["valid"]["recall@20"], record.metrics["test"]["recall@20"]
        assert f"| {record.config['seed']} |" in results
        assert f"{valid:.4f} / {test:.4f} ({record.metrics['best_epoch']})" in results
