"""The bad-input catalogue: every way a user can hand the CLI something wrong, as one table.

Each case builds its inputs in a fresh folder (a copy of the synthetic ``tiny`` dataset, a
trained run, or a raw log), runs one ``synergraph`` command there, and asserts what every
failure must give: a non-zero exit, exactly one ``Error:`` line naming the file, field or flag
(the expected text), no traceback, and no file created, changed or removed anywhere in that
folder (runs and caches included: they are pointed into it).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config
from dgl_synergraph.training import train

TINY = "{data}/tiny"


@pytest.fixture(scope="module")
def tiny_run(tiny_dir, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("catalogue") / "run"
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "embedding_dim": 8, "epochs": 2})
    train(config, out=out, dataset=tiny, progress=False)
    return out


# ---- what each case does to its folder before the command runs ------------------------------

def _inter(root: Path) -> Path:
    return root / "data" / "tiny" / "tiny.inter"


def rewrite_inter(transform):
    def prepare(root: Path):
        path = _inter(root)
        lines = path.read_text().splitlines()
        path.write_text("\n".join(transform(lines)) + ("\n" if lines else ""))
    return prepare


def replace_row(row: int, text: str):
    return rewrite_inter(lambda lines: lines[:row] + [text] + lines[row + 1:])


def write_feature(value):
    def prepare(root: Path):
        path = root / "data" / "tiny" / "image_feat.npy"
        if isinstance(value, bytes):
            path.write_bytes(value)
            return
        features = np.load(path)
        np.save(path, value(features))
    return prepare


def with_nan(features):
    features = features.copy()
    features[3, 2] = np.nan
    return features


def with_inf(features):
    features = features.copy()
    features[0, 0] = np.inf
    return features


def leak_test_pair(lines):
    """The first test pair also appears in train."""
    test = next(line for line in lines[1:] if line.endswith("\t2"))
    user, item, _ = test.split("\t")
    return lines + [f"{user}\t{item}\t0"]


def copy_run(root: Path):
    shutil.copytree(root / "_run", root / "run")


def truncate_checkpoint(root: Path):
    copy_run(root)
    path = root / "run" / "checkpoint.pt"
    path.write_bytes(path.read_bytes()[:1000])


def change_dataset_after_training(root: Path):
    copy_run(root)
    rewrite_inter(lambda lines: lines[:-1])(root)  # one interaction fewer: checksum differs


def other_datasets_checkpoint(root: Path):
    """The run's checkpoint replaced by one trained on a dataset with another item count."""
    copy_run(root)
    state = torch.load(root / "run" / "checkpoint.pt")
    state["best_model_state"] = {k: torch.cat([v, v[:3]]) for k, v in state["best_model_state"].items()}
    torch.save(state, root / "run" / "checkpoint.pt")


def write_file(name: str, text: str | bytes):
    def prepare(root: Path):
        path = root / name
        path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    return prepare


def several(*steps):
    def prepare(root: Path):
        for step in steps:
            step(root)
    return prepare


LOG = "user_id,item_id,rating,timestamp\n" + "".join(
    f"u{u},i{(u * 7 + j) % 40},5,{u * 100 + j}\n" for u in range(30) for j in range(6))

TRAIN = ["train", "--dataset", "tiny", "--data-dir", "{data}", "--epochs", "1", "--quiet"]
EVAL = ["eval", "--run", "{root}/run"]
GENERIC = ["preprocess", "generic", "--out", "{root}/out", "--quiet"]

# (id, prepare, command, expected text of the Error line)
CASES = [
    # data folders and interaction files
    ("missing data dir", None, ["train", "--dataset", "tiny", "--data-dir", "{root}/nowhere"], "no dataset 'tiny'"),
    ("unknown dataset", None, ["train", "--dataset", "nope", "--data-dir", "{data}"], "no dataset 'nope'"),
    ("missing .inter", lambda r: _inter(r).unlink(), TRAIN, "tiny"),
    ("empty .inter", rewrite_inter(lambda lines: []), TRAIN, "tiny.inter"),
    ("header only", rewrite_inter(lambda lines: lines[:1]), TRAIN, "tiny.inter"),
    ("wrong header", rewrite_inter(lambda lines: ["user\titem\tsplit"] + lines[1:]), TRAIN, "tiny.inter"),
    ("non-integer id", replace_row(5, "abc\t3\t0"), TRAIN, "tiny.inter"),
    ("negative id", replace_row(5, "-4\t3\t0"), TRAIN, "tiny.inter"),
    ("float id", replace_row(5, "2.5\t3\t0"), TRAIN, "tiny.inter"),
    ("x_label outside 0..2", replace_row(5, "0\t3\t7"), TRAIN, "x_label"),
    ("train/test overlap", rewrite_inter(leak_test_pair), TRAIN, "tiny.inter"),
    # feature files
    ("feature wrong row count", write_feature(lambda f: f[:-3]), TRAIN, "image_feat.npy"),
    ("feature 1-D", write_feature(lambda f: f[:, 0]), TRAIN, "image_feat.npy"),
    ("feature NaN", write_feature(with_nan), TRAIN, "image_feat.npy"),
    ("feature inf", write_feature(with_inf), TRAIN, "image_feat.npy"),
    ("feature integer dtype", write_feature(lambda f: (f * 10).astype(np.int64)), TRAIN, "image_feat.npy"),
    ("feature unreadable", write_feature(b"this is not a numpy file"), TRAIN, "image_feat.npy"),
    # settings and flags
    ("unknown model", None, TRAIN + ["--model", "nope"], "unknown model 'nope'"),
    ("unknown modality", None, TRAIN + ["--model", "mgcn", "--set", "modalities=audio"], "modalities"),
    ("unknown --set key", None, TRAIN + ["--set", "n_layer=2"], "n_layer"),
    ("--set value of the wrong type", None, TRAIN + ["--set", "n_layers=two"], "n_layers"),
    ("--set without =", None, TRAIN + ["--set", "oops"], "--set"),
    ("negative lr", None, TRAIN + ["--set", "lr=-0.1"], "lr"),
    ("--epochs 0", None, ["train", "--epochs", "0"], "--epochs"),
    ("knn_k above the item count", None, TRAIN + ["--model", "mgcn", "--set", "knn_k=500"], "knn_k"),
    ("--device cuda without CUDA", None, TRAIN + ["--device", "cuda"], "cuda"),
    ("--device unknown", None, TRAIN + ["--device", "tpu"], "--device"),
    ("YAML malformed", write_file("bad.yaml", "model: [lightgcn\n  epochs: : 3"), TRAIN + ["--config", "{root}/bad.yaml"], "bad.yaml"),
    ("YAML not a mapping", write_file("list.yaml", "- lightgcn\n"), TRAIN + ["--config", "{root}/list.yaml"], "list.yaml"),
    ("--config missing", None, TRAIN + ["--config", "{root}/absent.yaml"], "--config"),
    ("--out cannot be created", None, TRAIN + ["--out", "/proc/synergraph-run"], "--out /proc/synergraph-run"),
    ("--out holds a run", copy_run, TRAIN + ["--out", "{root}/run"], "--overwrite"),
    ("--resume with other settings", copy_run, ["train", "--resume", "{root}/run", "--model", "bpr"], "--resume"),
    # runs
    ("run dir missing", None, ["eval", "--run", "{root}/no-such-run"], "no such run directory"),
    ("not a run dir", None, ["eval", "--run", "{data}"], "config.json"),
    ("checkpoint truncated", truncate_checkpoint, EVAL, "checkpoint.pt"),
    ("checkpoint of another dataset", other_datasets_checkpoint, EVAL, "checkpoint.pt: the checkpoint's"),
    ("data changed since training", change_dataset_after_training, EVAL, "--force"),
    ("--k 0", copy_run, EVAL + ["--k", "0"], "--k"),
    ("--k above the item count", copy_run, EVAL + ["--k", "100000"], "--k"),
    ("recommend an unknown user", copy_run, ["recommend", "--run", "{root}/run", "--user", "99999"], "unknown user '99999'"),
    ("recommend without users", copy_run, ["recommend", "--run", "{root}/run"], "--user"),
    ("recommend unknown candidate", several(copy_run, write_file("c.txt", "1\nnope\n")),
     ["recommend", "--run", "{root}/run", "--user", "1", "--candidates", "{root}/c.txt"], "unknown item 'nope'"),
    # preprocessing
    ("preprocess missing log", None, GENERIC + ["--interactions", "{root}/absent.csv"], "absent.csv"),
    ("preprocess missing column", write_file("log.csv", LOG), GENERIC + ["--interactions", "{root}/log.csv", "--user-col", "customer"], "customer"),
    ("preprocess empty log", write_file("log.csv", "user_id,item_id\n"), GENERIC + ["--interactions", "{root}/log.csv"], "log.csv"),
    ("preprocess k-core removes everything", write_file("log.csv", LOG), GENERIC + ["--interactions", "{root}/log.csv", "--k-core", "50"], "k-core"),
    ("preprocess separator of two characters", write_file("log.csv", LOG), GENERIC + ["--interactions", "{root}/log.csv", "--separator", "::"], "--separator"),
    ("preprocess --out exists", several(write_file("log.csv", LOG), lambda r: (r / "out").mkdir()),
     GENERIC + ["--interactions", "{root}/log.csv"], "--overwrite"),
    ("generate with more interactions than pairs", None,
     ["generate", "--out", "{root}/gen", "--users", "5", "--items", "5", "--interactions", "100"], "--interactions"),
]


def _snapshot(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return out


def test_the_catalogue_has_35_or_more_cases():
    assert len(CASES) >= 35 and len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("prepare, command, expected", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input(prepare, command, expected, tiny_dir, tiny_run, tmp_path, monkeypatch):
    root = tmp_path
    shutil.copytree(tiny_dir / "tiny", root / "data" / "tiny")
    shutil.copytree(tiny_run, root / "_run")
    if (root / "_run" / "config.json").exists():  # the copied run points at the copied data
        text = (root / "_run" / "config.json").read_text().replace(str(tiny_dir / "tiny"), str(root / "data" / "tiny"))
        (root / "_run" / "config.json").write_text(text)
    if prepare is not None:
        prepare(root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("SYNERGRAPH_RUNS", str(root / "runs"))
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(root / "cache"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    before = _snapshot(root)
    args = [a.replace("{data}", str(root / "data")).replace("{root}", str(root)) for a in command]
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0, result.output
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.output
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert _snapshot(root) == before, "files were created, changed or removed"


def test_zero_norm_feature_rows_train_without_nan(tiny_dir, tmp_path, monkeypatch):
    """An all-zero feature row is valid input: the kNN graph has no NaN weight and training runs."""
    shutil.copytree(tiny_dir / "tiny", tmp_path / "tiny")
    path = tmp_path / "tiny" / "image_feat.npy"
    features = np.load(path)
    features[:5] = 0
    np.save(path, features)
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tmp_path), "--model", "mgcn",
                                      "--epochs", "2", "--quiet", "--out", str(tmp_path / "run"),
                                      "--set", "knn_k=5"])
    assert result.exit_code == 0, result.output
    metrics = (tmp_path / "run" / "metrics.json").read_text()
    assert "NaN" not in metrics and "nan" not in metrics


def test_a_separator_sniffed_or_given_reads_a_pipe_log(tmp_path):
    log = tmp_path / "u.data"
    log.write_text(LOG.replace(",", "|"))
    for extra in ([], ["--separator", "|"]):
        out = tmp_path / f"out{len(extra)}"
        result = CliRunner().invoke(app, ["preprocess", "generic", "--interactions", str(log), "--out", str(out),
                                          "--quiet", "--k-core", "1", *extra])
        assert result.exit_code == 0, result.output
        assert (out / f"{out.name}.inter").is_file()


def test_overwrite_replaces_a_run(tiny_dir, tiny_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(tiny_run, out)
    (out / "notes.txt").write_text("mine")
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    result = CliRunner().invoke(app, ["train", "--dataset", "tiny", "--data-dir", str(tiny_dir), "--epochs", "1",
                                      "--quiet", "--out", str(out), "--overwrite"])
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint.pt").stat().st_mtime_ns != before
    assert '"epochs_run": 1' in (out / "metrics.json").read_text()
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


def test_eval_force_uses_changed_data(tiny_dir, tiny_run, tmp_path):
    shutil.copytree(tiny_dir / "tiny", tmp_path / "tiny")
    inter = tmp_path / "tiny" / "tiny.inter"
    inter.write_text("\n".join(inter.read_text().splitlines()[:-1]) + "\n")
    refused = CliRunner().invoke(app, ["eval", "--run", str(tiny_run), "--data-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "--force" in refused.output
    forced = CliRunner().invoke(app, ["eval", "--run", str(tiny_run), "--data-dir", str(tmp_path), "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert "recall@20" in forced.output
