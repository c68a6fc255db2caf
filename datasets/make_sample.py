"""Build the embedded default dataset ``datasets/sample`` from Amazon Baby.

A dense corner of Baby (``../shared/data/baby``, real interactions, derived features): the most
interacted items, then users with enough interactions among them. The original 8:1:1 split
labels are kept. Features are reduced to a small width with PCA so the sample stays under 5 MB.

    .venv/bin/python datasets/make_sample.py [--source ../shared/data/baby] [--items 1500]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl

HERE = Path(__file__).resolve().parent


def pca(features: np.ndarray, width: int) -> np.ndarray:
    centred = features - features.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:width].T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=HERE.parents[1] / "shared" / "data" / "baby")
    parser.add_argument("--out", type=Path, default=HERE / "sample")
    parser.add_argument("--items", type=int, default=1500, help="keep the N most interacted items")
    parser.add_argument("--min-user-interactions", type=int, default=6)
    parser.add_argument("--width", type=int, default=64, help="feature width after PCA")
    args = parser.parse_args()

    inter = pl.read_csv(args.source / "baby.inter", separator="\t")
    top_items = inter.group_by("itemID").len().sort(["len", "itemID"], descending=[True, False]).head(args.items)["itemID"]
    kept = inter.filter(pl.col("itemID").is_in(top_items.implode()))
    users = kept.group_by("userID").len().filter(pl.col("len") >= args.min_user_interactions)["userID"]
    kept = kept.filter(pl.col("userID").is_in(users.implode()))
    trained = kept.filter(pl.col("x_label") == 0)["userID"].unique()
    kept = kept.filter(pl.col("userID").is_in(trained.implode()))

    item_ids = np.sort(kept["itemID"].unique().to_numpy())
    user_ids = np.sort(kept["userID"].unique().to_numpy())
    item_map = {old: new for new, old in enumerate(item_ids)}
    user_map = {old: new for new, old in enumerate(user_ids)}
    out = kept.select(
        pl.col("userID").replace_strict(user_map).alias("userID"),
        pl.col("itemID").replace_strict(item_map).alias("itemID"),
        "x_label",
    ).sort(["userID", "itemID"])

    args.out.mkdir(parents=True, exist_ok=True)
    out.write_csv(args.out / "sample.inter", separator="\t")
    for modality in ("image", "text"):
        full = np.load(args.source / f"{modality}_feat.npy").astype(np.float32)
        np.save(args.out / f"{modality}_feat.npy", pca(full[item_ids], args.width).astype(np.float16))
    asins = pl.read_csv(args.source / "i_id_mapping.csv", separator="\t").sort("itemID")["asin"].to_numpy()
    pl.DataFrame({"asin": asins[item_ids], "itemID": np.arange(len(item_ids))}).write_csv(
        args.out / "i_id_mapping.csv", separator="\t")
    pl.DataFrame({"baby_userID": user_ids, "userID": np.arange(len(user_ids))}).write_csv(
        args.out / "u_id_mapping.csv", separator="\t")
    counts = out.group_by("x_label").len().sort("x_label")["len"].to_list()
    size = sum(p.stat().st_size for p in args.out.iterdir()) / 1e6
    print(f"sample: {len(user_ids)} users, {len(item_ids)} items, train/valid/test {counts}, {size:.2f} MB in {args.out}")


if __name__ == "__main__":
    main()
