"""Synthetic datasets at any scale, in the MMRec layout (``synergraph generate``).

Items belong to planted clusters and have power-law popularity; users have power-law activity
(at least ``min_per_user`` interactions) and a home cluster from which most of their items come;
each modality's features are the item's cluster centre plus noise. Interactions and features
share the clusters, so models learn something and modality kNN graphs look real. Everything is
vectorised (Elec size, 1.69M interactions and a 63,001 x 4,096 image table, takes seconds to
generate) and written to a staging folder renamed into place at the end.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from dgl_synergraph.errors import ConfigError, DataError, require

FEATURE_CHUNK_ROWS = 8192
NOISE = 0.7  # feature noise against unit-variance cluster centres: same-cluster cosine about 0.67


@dataclass(frozen=True)
class GenerateSpec:
    users: int
    items: int
    interactions: int
    modalities: dict[str, int] = field(default_factory=lambda: {"image": 4096, "text": 384})
    clusters: int = 0  # 0: about sqrt(items) / 4, at least 4
    in_cluster: float = 0.8
    min_per_user: int = 5
    seed: int = 999

    def check(self) -> None:
        require(self.users >= 2, f"--users: need at least 2, got {self.users}")
        require(self.items >= 2, f"--items: need at least 2, got {self.items}")
        least = self.users * self.min_per_user + self.items
        require(self.interactions >= least, f"--interactions: need at least {least} ({self.min_per_user} per user "
                                            f"plus one per item), got {self.interactions}")
        require(self.interactions <= 0.5 * self.users * self.items,
                f"--interactions: {self.interactions} is more than half of all user-item pairs")
        require(0 <= self.in_cluster <= 1, "--in-cluster: must be in [0, 1]")
        for name, dim in self.modalities.items():
            require(dim > 0, f"--{name}-dim: must be positive, got {dim}")


PRESETS = {
    # Amazon Electronics at MMRec scale: 192,403 users, 63,001 items, 1,689,188 interactions.
    "elec": GenerateSpec(users=192_403, items=63_001, interactions=1_689_188),
}


def _power_law(rng: np.random.Generator, n: int, exponent: float = 1.2) -> np.ndarray:
    return rng.pareto(exponent, size=n) + 1.0


def _user_degrees(rng: np.random.Generator, spec: GenerateSpec, n_clusters: int) -> np.ndarray:
    """Power-law activity, each user at least ``min_per_user``, summing to the total less one
    interaction per item (drawn separately so that every item is interacted with)."""
    weight = _power_law(rng, spec.users)
    extra = spec.interactions - spec.items - spec.users * spec.min_per_user
    # room to draw distinct items: a user's home-cluster draws stay within a quarter of a cluster
    smallest_cluster = spec.items // n_clusters
    cap = max(int(smallest_cluster / (4 * max(spec.in_cluster, 0.25))), 2 * spec.min_per_user) - spec.min_per_user
    share = np.minimum(np.floor(weight / weight.sum() * extra), cap).astype(np.int64)
    remaining = extra - int(share.sum())
    while remaining > 0:  # hand what rounding and the cap left over to users with room
        room = np.flatnonzero(share < cap)
        if len(room) == 0:
            raise ConfigError("--interactions: too many for these users and items")
        take = rng.choice(room, size=min(remaining, len(room)), replace=False)
        share[take] += 1
        remaining -= len(take)
    return spec.min_per_user + share


def _draw_pairs(rng, spec, user_home, item_order, cluster_start, cluster_cum, users) -> np.ndarray:
    """One item per entry of ``users``: from the user's home cluster with probability
    ``in_cluster``, else from a random cluster, by popularity within the cluster."""
    n_clusters = len(cluster_start) - 1
    cluster = np.where(rng.random(len(users)) < spec.in_cluster, user_home[users],
                       rng.integers(n_clusters, size=len(users)))
    lo, hi = cluster_start[cluster], cluster_start[cluster + 1]
    base = np.where(lo > 0, cluster_cum[np.maximum(lo - 1, 0)], 0.0)
    target = base + rng.random(len(users)) * (cluster_cum[hi - 1] - base)
    position = np.minimum(np.searchsorted(cluster_cum, target, side="right"), hi - 1)
    return item_order[position]


def generate_interactions(spec: GenerateSpec) -> tuple[pl.DataFrame, np.ndarray]:
    """(user, item, x_label) rows, exactly ``spec.interactions`` distinct pairs, and each item's cluster."""
    spec.check()
    rng = np.random.default_rng(spec.seed)
    n_clusters = spec.clusters or max(4, int(round(np.sqrt(spec.items) / 4)))
    require(n_clusters <= spec.items, f"--clusters: {n_clusters} is more than the {spec.items} items")
    item_cluster = rng.permutation(np.arange(spec.items) % n_clusters)
    popularity = _power_law(rng, spec.items)
    item_order = np.argsort(item_cluster, kind="stable")  # items grouped by cluster
    cluster_start = np.searchsorted(item_cluster[item_order], np.arange(n_clusters + 1))
    cluster_cum = np.cumsum(popularity[item_order])
    user_home = rng.integers(n_clusters, size=spec.users)
    degrees = _user_degrees(rng, spec, n_clusters)

    # Every item once with a random user (so every feature row belongs to an interacted item), then
    # the users' draws; duplicates among the draws are redrawn.
    users = np.concatenate([rng.integers(spec.users, size=spec.items), np.repeat(np.arange(spec.users), degrees)])
    items = np.concatenate([np.arange(spec.items), np.zeros(int(degrees.sum()), dtype=np.int64)])
    keys = np.empty(0, dtype=np.int64)
    todo = np.arange(spec.items, len(users))
    for _ in range(200):  # redraw duplicates until the pairs are distinct
        items[todo] = _draw_pairs(rng, spec, user_home, item_order, cluster_start, cluster_cum, users[todo])
        keys = users * spec.items + items
        _, first = np.unique(keys, return_index=True)
        duplicate = np.ones(len(keys), dtype=bool)
        duplicate[first] = False
        todo = np.flatnonzero(duplicate)
        if len(todo) == 0:
            break
    else:
        raise DataError("generate: could not draw distinct pairs; use fewer interactions or more items")
    return pl.DataFrame({"user": users, "item": items}), item_cluster


def _features(rng, item_cluster: np.ndarray, dim: int, path: Path) -> None:
    """Cluster centre + noise per item, written in row chunks (an Elec image table is 1 GB)."""
    n_clusters = int(item_cluster.max()) + 1
    centres = rng.normal(size=(n_clusters, dim)).astype(np.float32)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(len(item_cluster), dim))
    for start in range(0, len(item_cluster), FEATURE_CHUNK_ROWS):
        rows = item_cluster[start:start + FEATURE_CHUNK_ROWS]
        noise = rng.normal(scale=NOISE, size=(len(rows), dim)).astype(np.float32)
        out[start:start + len(rows)] = centres[rows] + noise
    out.flush()
    del out


def generate(out: str | Path, spec: GenerateSpec, overwrite: bool = False) -> dict:
    """Write the dataset folder ``out`` (its name is the dataset name); returns a summary."""
    from dgl_synergraph.data.preprocess import PreprocessOptions, assign_split, replace_folder

    out = Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"--out {out}: already exists (pass --overwrite to replace it)")
    spec.check()
    frame, item_cluster = generate_interactions(spec)
    frame = assign_split(frame, PreprocessOptions(split="random", seed=spec.seed))
    inter = frame.rename({"user": "userID", "item": "itemID"}).select(["userID", "itemID", "x_label"]).sort(
        ["userID", "itemID"])
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        inter.write_csv(staging / f"{out.name}.inter", separator="\t")
        rng = np.random.default_rng(spec.seed + 1)
        for name, dim in spec.modalities.items():
            _features(rng, item_cluster, dim, staging / f"{name}_feat.npy")
        replace_folder(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    split = dict(zip(("train", "valid", "test"), [int((inter["x_label"] == label).sum()) for label in range(3)]))
    return {"path": str(out), "users": spec.users, "items": spec.items, "interactions": inter.height,
            "clusters": int(item_cluster.max()) + 1, "split": split, "features": dict(spec.modalities)}
