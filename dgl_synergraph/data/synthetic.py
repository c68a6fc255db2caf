"""Small clustered datasets in the MMRec layout, for tests and examples.

Users and items belong to latent clusters; users mostly interact with items of their cluster and
item features are the cluster centre plus noise, so both collaborative and modality signals are
learnable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_dataset(
    folder: str | Path,
    n_users: int = 120,
    n_items: int = 80,
    n_clusters: int = 4,
    per_user: int = 10,
    in_cluster: float = 0.85,
    modalities: dict[str, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write ``folder/<name>.inter`` and ``<modality>_feat.npy``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    modalities = {"image": 16, "text": 8} if modalities is None else modalities
    user_cluster = rng.integers(n_clusters, size=n_users)
    item_cluster = np.arange(n_items) % n_clusters
    # Within a cluster some items are more popular than others.
    item_weight = rng.pareto(1.5, size=n_items) + 1.0
    rows = []
    for user in range(n_users):
        own = item_cluster == user_cluster[user]
        probs = np.where(own, in_cluster / own.sum(), (1 - in_cluster) / (~own).sum()) * item_weight
        items = rng.choice(n_items, size=per_user, replace=False, p=probs / probs.sum())
        labels = np.zeros(per_user, dtype=int)
        labels[: max(1, per_user // 10)] = 1
        labels[max(1, per_user // 10) : 2 * max(1, per_user // 10)] = 2
        rng.shuffle(labels)
        rows += [(user, int(item), int(label)) for item, label in zip(items, labels)]
    # Every item id must appear so the feature row count equals the item count.
    present = {item for _, item, _ in rows}
    for item in sorted(set(range(n_items)) - present):
        rows.append((int(rng.integers(n_users)), item, 0))
    rows = list({(u, i): (u, i, x) for u, i, x in rows}.values())
    lines = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{x}" for u, i, x in rows]
    (folder / f"{folder.name}.inter").write_text("\n".join(lines) + "\n")
    for name, width in modalities.items():
        centres = rng.normal(size=(n_clusters, width))
        feats = centres[item_cluster] + 0.5 * rng.normal(size=(n_items, width))
        np.save(folder / f"{name}_feat.npy", feats.astype(np.float32))
    return folder
