"""The cold-start protocol: hold out a share of the items entirely, train without them, then add
them from their content alone and rank them among all items for the users who bought them.

    python -m dgl_synergraph.evaluation.cold_start --dataset baby --data-dir ../shared/data \\
        --model mgcn [--share 0.1] [--seed 999] [--set key=value ...] [--out runs/cold-baby-mgcn]

Steps (``run_protocol``):
1. ``share`` of the items (seeded) are held out: every interaction with them leaves every split.
   The rest, renumbered, is written as the "warm" dataset (``<out>/data/<name>-warm``).
2. The model trains on the warm dataset as usual (validation on the warm valid split).
3. The held-out items are added with ``TrainedRun.add_items`` (docs/cold_start.md).
4. For every user who interacted with a held-out item (any split) and has warm training data,
   all items (warm + added) are ranked, the user's warm training items masked; the relevant set
   is the user's held-out items. Recall@K and NDCG@K, as in the full-ranking protocol.
Baselines on the same users and candidates: content kNN (an item's score is its mean cosine
similarity, averaged over the modalities, to the user's training items' raw features) and random
scores. Nothing here reads the held-out items' interactions except as the evaluation target.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp
import torch

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.loader import load_dataset
from dgl_synergraph.evaluation.evaluator import RankingEvaluator
from dgl_synergraph.utils import write_json


def hold_out_items(dataset: Dataset, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(warm item ids, held-out item ids), both sorted; ``share`` of the items held out."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    order = np.random.default_rng(seed).permutation(dataset.n_items)
    n_out = max(1, int(round(share * dataset.n_items)))
    return np.sort(order[n_out:]), np.sort(order[:n_out])


def write_warm_dataset(dataset: Dataset, warm: np.ndarray, folder: Path) -> Path:
    """The dataset without the held-out items, items renumbered 0..len(warm)-1, in the MMRec
    layout (written to a temporary folder, then renamed)."""
    new_id = np.full(dataset.n_items, -1, dtype=np.int64)
    new_id[warm] = np.arange(len(warm))
    frames = []
    for label, pairs in enumerate((dataset.train, dataset.valid, dataset.test)):
        kept = pairs[new_id[pairs[:, 1]] >= 0]
        frames.append(pl.DataFrame({"userID": kept[:, 0], "itemID": new_id[kept[:, 1]],
                                    "x_label": np.full(len(kept), label, dtype=np.int64)}))
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    pl.concat(frames).write_csv(staging / f"{folder.name}.inter", separator="\t")
    for modality, table in dataset.features.items():
        np.save(staging / f"{modality}_feat.npy", table[warm])
    if dataset.raw_item_ids is not None:
        pl.DataFrame({"asin": [str(i) for i in dataset.raw_item_ids[warm]], "itemID": np.arange(len(warm))}) \
            .write_csv(staging / "i_id_mapping.csv", separator="\t")
    if folder.exists():
        shutil.rmtree(folder)
    staging.rename(folder)
    folder.chmod(0o755)
    return folder


def cold_evaluator(dataset: Dataset, warm_train: sp.csr_matrix, held_out: np.ndarray, ks: list[int]) -> RankingEvaluator:
    """Targets: each user's held-out items (as columns n_warm.. of the extended catalogue), for
    users with warm training data; mask: their warm training items."""
    n_warm = warm_train.shape[1]
    column = np.full(dataset.n_items, -1, dtype=np.int64)
    column[held_out] = n_warm + np.arange(len(held_out))
    pairs = np.concatenate([dataset.train, dataset.valid, dataset.test])
    pairs = pairs[column[pairs[:, 1]] >= 0]
    has_train = np.diff(warm_train.indptr) > 0
    pairs = pairs[has_train[pairs[:, 0]]]
    shape = (dataset.n_users, n_warm + len(held_out))
    target = sp.csr_matrix((np.ones(len(pairs), dtype=np.float32), (pairs[:, 0], column[pairs[:, 1]])), shape=shape)
    mask = sp.csr_matrix((warm_train.data, warm_train.indices, warm_train.indptr), shape=shape)
    return RankingEvaluator(target, [mask], ks)


def content_knn_scorer(features: dict[str, np.ndarray], train: sp.csr_matrix):
    """score(u, i) = mean over modalities of the mean cosine of item i to u's training items."""
    units = {m: torch.nn.functional.normalize(torch.as_tensor(f, dtype=torch.float32), dim=1)
             for m, f in features.items()}
    n_warm = train.shape[1]
    counts = torch.as_tensor(np.maximum(np.diff(train.indptr), 1), dtype=torch.float32)

    def score(users: torch.Tensor) -> torch.Tensor:
        rows = train[users.numpy()]
        picked = torch.sparse_csr_tensor(torch.as_tensor(rows.indptr, dtype=torch.int64),
                                         torch.as_tensor(rows.indices, dtype=torch.int64),
                                         torch.ones(rows.nnz), size=(len(users), n_warm))
        total = 0
        for unit in units.values():
            profile = (picked @ unit[:n_warm]) / counts[users, None]  # mean of the user's items
            total = total + profile @ unit.t()
        return total / len(units)
    return score


def run_protocol(dataset: Dataset, model: str, out: Path, share: float = 0.1, seed: int = 999,
                 settings: dict | None = None, ks: tuple[int, ...] = (10, 20), progress: bool = True) -> dict:
    from dgl_synergraph.api import load_run
    from dgl_synergraph.training import build_config, train

    warm, held_out = hold_out_items(dataset, share, seed)
    folder = write_warm_dataset(dataset, warm, out / "data" / f"{dataset.name}-warm")
    warm_data = load_dataset(path=folder)
    run_dir = out / "run"
    config = build_config({"dataset": warm_data.name, "data_dir": str(folder.parent), "model": model, "seed": seed},
                          settings or {})
    if not (run_dir / "metrics.json").is_file():
        train(config, out=run_dir, dataset=warm_data, progress=progress, overwrite=True)
    run = load_run(run_dir)
    held_features = {m: f[held_out] for m, f in dataset.features.items()}
    ids = [str(i) for i in dataset.raw_item_ids[held_out]] if dataset.raw_item_ids is not None else None
    run.add_items({m: held_features[m] for m in run.dataset.features}, ids=ids if run.dataset.raw_item_ids is not None else None)

    warm_train = warm_data.csr("train")
    evaluator = cold_evaluator(dataset, warm_train, held_out, list(ks))
    all_features = {m: np.concatenate([warm_data.features[m], held_features[m]]) for m in warm_data.features}
    generator = torch.Generator().manual_seed(seed)
    n_total = warm_data.n_items + len(held_out)
    results = {
        model: evaluator.evaluate(run._score),
        "content kNN": evaluator.evaluate(content_knn_scorer(all_features, warm_train)),
        "random": evaluator.evaluate(lambda users: torch.rand(len(users), n_total, generator=generator)),
    }
    summary = {"dataset": dataset.name, "model": model, "share": share, "seed": seed, "settings": settings or {},
               "warm_items": int(len(warm)), "held_out_items": int(len(held_out)), "users": evaluator.n_users,
               "warm_test": run.metrics["test"], "cold": results}
    write_json(out / "cold_start.json", summary)
    return summary


def main() -> None:
    from dgl_synergraph.config import parse_set_values

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="sample")
    parser.add_argument("--data-dir")
    parser.add_argument("--model", default="mgcn")
    parser.add_argument("--share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=999)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out")
    args = parser.parse_args()
    dataset = load_dataset(args.dataset, args.data_dir)
    out = Path(args.out or f"runs/cold-{args.dataset}-{args.model}")
    summary = run_protocol(dataset, args.model, out, args.share, args.seed, parse_set_values(args.settings))
    print(f"{summary['held_out_items']} held-out items, {summary['users']} users who bought them "
          f"(real interactions of {args.dataset}); warm test R@20 {summary['warm_test']['recall@20']:.4f}")
    print("| scorer | R@10 | R@20 | N@10 | N@20 |\n|---|---|---|---|---|")
    for name, m in summary["cold"].items():
        print(f"| {name} | {m['recall@10']:.4f} | {m['recall@20']:.4f} | {m['ndcg@10']:.4f} | {m['ndcg@20']:.4f} |")
    print(f"wrote {out / 'cold_start.json'}")


if __name__ == "__main__":
    main()
