"""`synergraph preprocess`: raw Amazon files built inside the test, generic logs, bad input."""

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config
from dgl_synergraph.data import load_dataset
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.training import train

DIM = 8  # floats per image record in these tests (real files: 4096)


def make_raw_amazon(folder: Path, category: str = "Toys", seed: int = 0) -> dict:
    """reviews (gzip JSON lines), meta (gzip Python literal lines), image .b records."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    core_users = [f"U{u:03d}" for u in range(40)]
    core_items = [f"B{i:09d}" for i in range(25)]
    reviews = []
    for user in core_users:
        for item in rng.choice(core_items, size=int(rng.integers(6, 12)), replace=False):
            reviews.append({"reviewerID": user, "asin": str(item), "overall": float(rng.integers(1, 6)),
                            "unixReviewTime": int(rng.integers(1.3e9, 1.4e9)), "reviewText": "ok"})
    # a user with 4 reviews and an item with 2 reviews: removed by the 5-core, and an item that
    # only the low user reviewed (cascade)
    reviews += [{"reviewerID": "LOWUSER", "asin": a, "overall": 5.0, "unixReviewTime": 1.35e9}
                for a in core_items[:3] + ["BLOWITEM01"]]
    reviews += [{"reviewerID": core_users[0], "asin": "BRAREITEM1", "overall": 4.0, "unixReviewTime": 1.36e9}]
    reviews.append(dict(reviews[0]))  # an exact duplicate review
    with gzip.open(folder / f"reviews_{category}_5.json.gz", "wt") as handle:
        for review in reviews:
            handle.write(json.dumps(review) + "\n")
    with gzip.open(folder / f"meta_{category}.json.gz", "wt") as handle:
        for index, asin in enumerate(core_items + ["BLOWITEM01"]):
            meta = {"asin": asin, "title": f"toy number {index}", "categories": [["Toys", "Blocks"]],
                    "description": "wooden" if index % 2 else "plastic"}
            handle.write(repr(meta) + "\n")  # Python literal, single quotes, like the 2014 dump
    vectors = {asin: rng.normal(size=DIM).astype("<f4") for asin in core_items[:-2]}  # two items lack one
    with open(folder / f"image_features_{category}.b", "wb") as handle:
        for asin, vec in vectors.items():
            handle.write(asin.encode("ascii").ljust(10)[:10] + vec.tobytes())
    return {"reviews": reviews, "vectors": vectors, "core_items": core_items}


def run_cli(*args):
    return CliRunner().invoke(app, ["preprocess", *map(str, args)])


def test_amazon_pipeline_end_to_end(tmp_path, tiny_dir):
    raw = make_raw_amazon(tmp_path / "raw")
    out = tmp_path / "data" / "toys"
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out,
                     "--text-model", "none", "--image-dim", DIM, "--quiet")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["raw"] == len(raw["reviews"])
    assert manifest["counts"]["deduplicated"] == len(raw["reviews"]) - 1
    assert manifest["users"] == 40 and manifest["items"] == 25  # LOWUSER, BLOWITEM01, BRAREITEM1 gone
    assert manifest["inputs"][0]["sha256"] and manifest["options"]["k_core"] == 5

    data = load_dataset("toys", tmp_path / "data")
    inter = pl.read_csv(out / "toys.inter", separator="\t")
    assert inter.columns == ["userID", "itemID", "rating", "timestamp", "x_label"]
    # k-core: every user and item keeps >= 5 interactions over all splits
    assert inter.group_by("userID").len()["len"].min() >= 5
    assert inter.group_by("itemID").len()["len"].min() >= 5
    # splits are disjoint per (user, item) and per user 8:1:1 with at least one valid and test
    assert inter.select(["userID", "itemID"]).is_duplicated().sum() == 0
    per_user = inter.group_by("userID").agg(n=pl.len(), valid=(pl.col("x_label") == 1).sum(),
                                            test=(pl.col("x_label") == 2).sum())
    for n, valid, test in per_user.select(["n", "valid", "test"]).iter_rows():
        assert test == max(1, n // 10) and valid == max(1, n // 10)
    # id mapping round trip: every output pair is a raw review of the same user and item
    users = pl.read_csv(out / "u_id_mapping.csv", separator="\t")["raw_id"].to_list()
    items = pl.read_csv(out / "i_id_mapping.csv", separator="\t")["raw_id"].to_list()
    raw_pairs = {(r["reviewerID"], r["asin"]) for r in raw["reviews"]}
    assert all((users[u], items[i]) in raw_pairs for u, i in inter.select(["userID", "itemID"]).iter_rows())
    assert list(data.raw_item_ids) == items
    # feature alignment: row i is the raw vector of item i's asin; the two without one get the mean
    image = np.load(out / "image_feat.npy")
    assert image.shape == (25, DIM)
    mean = np.mean(list(raw["vectors"].values()), axis=0)
    for row, asin in enumerate(items):
        np.testing.assert_allclose(image[row], raw["vectors"].get(asin, mean), rtol=1e-6)
    assert manifest["features"]["image"]["missing_filled_with_mean"] == 2
    # and the result trains
    config = build_config({"dataset": "toys", "data_dir": str(tmp_path / "data"), "epochs": 2, "embedding_dim": 8})
    with pytest.raises(ConfigError, match="K=50 exceeds the 25 items"):
        train(config, out=tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()
    config = build_config(config.model_dump(), {"ks": [5, 10], "valid_metric": "recall@10"})
    run = train(config, out=tmp_path / "run", progress=False)
    assert 0 < run.metrics["test"]["recall@10"] <= 1


def test_temporal_split_puts_latest_interactions_in_test(tmp_path):
    make_raw_amazon(tmp_path / "raw")
    out = tmp_path / "t"
    assert run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--text-model",
                   "none", "--image-dim", DIM, "--split", "temporal", "--quiet").exit_code == 0
    inter = pl.read_csv(out / "t.inter", separator="\t")
    for _, group in inter.group_by("userID"):
        assert group.filter(pl.col("x_label") == 2)["timestamp"].min() >= group.filter(pl.col("x_label") == 0)["timestamp"].max()
    loo = tmp_path / "loo"
    assert run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", loo, "--text-model",
                   "none", "--image-dim", DIM, "--split", "leave-last-out", "--quiet").exit_code == 0
    inter = pl.read_csv(loo / "loo.inter", separator="\t")
    for _, group in inter.group_by("userID"):
        latest = group.sort("timestamp", descending=True)
        assert (group["x_label"] == 2).sum() == 1 and (group["x_label"] == 1).sum() == 1
        assert latest["x_label"][0] == 2 and latest["timestamp"][1] >= group.filter(pl.col("x_label") == 0)["timestamp"].max()


def test_generic_log_with_embeddings(tmp_path):
    rng = np.random.default_rng(3)
    rows = [(f"u{u}", f"i{i}", int(t)) for u in range(30) for t, i in enumerate(rng.choice(20, 7, replace=False))]
    pl.DataFrame(rows, schema=["uid", "iid", "ts"], orient="row").write_csv(tmp_path / "log.csv")
    emb = rng.normal(size=(20, 4)).astype(np.float32)
    np.save(tmp_path / "emb.npy", emb)
    (tmp_path / "ids.txt").write_text("\n".join(f"i{i}" for i in range(20)))
    out = tmp_path / "gen"
    result = run_cli("generic", "--interactions", tmp_path / "log.csv", "--user-col", "uid", "--item-col", "iid",
                     "--time-col", "ts", "--embedding", f"image={tmp_path / 'emb.npy'}:{tmp_path / 'ids.txt'}",
                     "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    data = load_dataset(path=out)
    for row, raw in enumerate(data.raw_item_ids):
        np.testing.assert_allclose(data.features["image"][row], emb[int(raw[1:])])
    datasets = CliRunner().invoke(app, ["datasets", "--data-dir", str(tmp_path)])
    assert "gen" in datasets.output


def _corrupt(folder: Path, name: str, content: bytes) -> None:
    (folder / name).write_bytes(content)


def _gz(lines: list[str]) -> bytes:
    return gzip.compress(("\n".join(lines) + "\n").encode(), mtime=0)  # the same bytes (and test id) every run


@pytest.mark.parametrize("file, content, message", [
    ("reviews_Toys_5.json.gz", b"\x1f\x8b\x08\x00garbage-not-deflate", "corrupt gzip"),
    ("reviews_Toys_5.json.gz", _gz(['{"reviewerID": "a", "asin": "b"}', "{not json"]), "line 2: not valid JSON"),
    ("reviews_Toys_5.json.gz", _gz(['{"reviewerID": "a"}']), "line 1: missing required field 'asin'"),
    ("meta_Toys.json.gz", _gz(["{'asin': 'B1', 'title': 'x'}", "{'asin': 'B2', 'title': broken"]),
     "line 2: neither JSON nor a Python literal"),
    ("meta_Toys.json.gz", _gz(["{'title': 'no asin'}"]), "line 1: missing required field 'asin'"),
    ("image_features_Toys.b", b"x" * 33, "is not a multiple of the record size"),
])
def test_bad_raw_input_is_one_error_line_and_no_output(tmp_path, file, content, message):
    make_raw_amazon(tmp_path / "raw")
    _corrupt(tmp_path / "raw", file, content)
    out = tmp_path / "data" / "toys"
    # text features on for the meta cases: they read the meta file (with a local dummy model path
    # the meta is parsed before the model is needed)
    text = ["--text-model", str(tmp_path / "no-model")] if file.startswith("meta") else ["--text-model", "none"]
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--image-dim", DIM,
                     "--quiet", *text)
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error:") and message in lines[0], result.output
    assert not out.exists()
    leftovers = list((tmp_path / "data").iterdir()) if (tmp_path / "data").exists() else []
    assert leftovers == []  # no half-written staging folder either


def test_empty_after_k_core_and_existing_output(tmp_path):
    make_raw_amazon(tmp_path / "raw")
    out = tmp_path / "data" / "toys"
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--text-model",
                     "none", "--image-dim", DIM, "--k-core", "50")
    assert result.exit_code == 1 and "no interactions left after the 50-core filter" in result.output
    assert not out.exists()
    out.mkdir(parents=True)
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--text-model", "none")
    assert result.exit_code == 1 and "already exists (pass --overwrite" in result.output
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--text-model",
                     "none", "--image-dim", DIM, "--overwrite", "--quiet")
    assert result.exit_code == 0 and (out / "toys.inter").is_file()
    missing = run_cli("amazon", "--category", "Garden", "--raw-dir", tmp_path / "raw", "--out", tmp_path / "g")
    assert missing.exit_code == 1 and "no review file for category 'Garden'" in missing.output


# Only these two need the text extra; every other preprocess test runs without it.
needs_text = pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is None,
                                reason="text extra not installed")


@needs_text
def test_offline_minilm_puts_near_identical_titles_nearer(tmp_path):
    from dgl_synergraph.data.text import encode_texts

    emb = encode_texts(["baby stroller with canopy", "stroller for babies with a sun canopy",
                        "stainless steel chef knife"], cache_dir=tmp_path, progress=False)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert emb.shape == (3, 384)
    assert unit[0] @ unit[1] > unit[0] @ unit[2] + 0.3
    # cached: a second call loads the file without the model
    assert len(list(tmp_path.glob("text-*.npy"))) == 1
    np.testing.assert_array_equal(encode_texts(["baby stroller with canopy", "stroller for babies with a sun canopy",
                                                "stainless steel chef knife"], cache_dir=tmp_path), emb)


@needs_text
def test_amazon_with_text_features(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    make_raw_amazon(tmp_path / "raw")
    out = tmp_path / "toys"
    result = run_cli("amazon", "--category", "Toys", "--raw-dir", tmp_path / "raw", "--out", out, "--image-dim", DIM,
                     "--quiet")
    assert result.exit_code == 0, result.output
    text = np.load(out / "text_feat.npy")
    assert text.shape == (25, 384) and np.isfinite(text).all()
