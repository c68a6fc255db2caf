"""The benchmark suite runs and writes well-formed output (figures are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_run_quick_writes_json_and_markdown(tmp_path):
    done = subprocess.run([sys.executable, "-m", "benchmarks.run", "--quick", "--datasets", "sample", "missing",
                           "--models", "lightgcn", "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert {"date", "threads", "precision", "torch", "command"} <= set(report["environment"])
    sample, missing = report["results"]
    assert sample["dataset"] == "sample" and sample["model"] == "lightgcn" and sample["repeats"] == 1
    for key in ("load_s", "epoch_s", "eval_s", "peak_rss_gb"):
        assert isinstance(sample[key], float) and sample[key] > 0
    assert sample["epoch_s_each"] == [sample["epoch_s"]] and sample["eval_s_each"] == [sample["eval_s"]]
    assert "not found" in missing["error"]
    table = (tmp_path / "benchmark.md").read_text()
    assert "| sample | lightgcn | fp32 | 6,033 | 1,500 |" in table and "| missing | lightgcn |" in table
    assert table in done.stdout


def test_model_prefixed_settings_reach_only_that_model():
    from benchmarks.run import settings_for

    given = ["lightgcn.n_layers=2", "batch_size=1024", "mgcn.knn_k=5"]
    assert settings_for("mgcn", given) == ["batch_size=1024", "knn_k=5"]
    assert settings_for("lightgcn", given) == ["n_layers=2", "batch_size=1024"]
    assert settings_for("siger", given) == ["batch_size=1024"]
