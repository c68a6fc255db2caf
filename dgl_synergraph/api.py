"""Python API for trained runs: ``load_run(run_dir)`` -> recommend, score, export.

    >>> from dgl_synergraph import api
    >>> run = api.load_run("runs/baby-lightgcn-seed999")
    >>> run.recommend(["42"], k=10)          # raw ids when the dataset has id mappings
    >>> run.score([42], [0, 1, 2], ids="internal")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from dgl_synergraph.errors import DataError
from dgl_synergraph.evaluation.evaluator import CSRTensor, masked_top_k, top_length_for
from dgl_synergraph.training.runs import LoadedRun
from dgl_synergraph.training.runs import load_run as _load_run
from dgl_synergraph.training.trainer import train
from dgl_synergraph.utils import atomic_write

IdKind = Literal["auto", "raw", "internal"]


@dataclass
class Recommendation:
    user: object  # as the caller named it (raw or internal id)
    items: list  # raw item ids when a mapping exists, else internal ids
    scores: list[float]
    fallback: bool = False  # True when the user was unknown and got the popular items

    def as_dict(self) -> dict:
        return {"user": self.user, "items": self.items, "scores": self.scores, "fallback": self.fallback}


class TrainedRun:
    """A trained model with its dataset, ready to answer "what should user u see?"."""

    def __init__(self, loaded: LoadedRun):
        self.run_dir = loaded.run_dir
        self.config = loaded.config
        self.dataset = loaded.dataset
        self.model = loaded.model
        self.device = loaded.device
        self.metrics = loaded.metrics
        self._score = self.model.scorer()
        self._seen = CSRTensor(self.dataset.csr("train"), self.device)
        self._raw_users = _lookup(self.dataset.raw_user_ids)
        self._raw_items = self.dataset.raw_item_ids
        self._item_index = _lookup(self._raw_items)

    # ---- ids -------------------------------------------------------------------------------
    def _uses_raw(self, ids: IdKind, mapping) -> bool:
        if ids == "raw" and mapping is None:
            raise DataError(f"dataset {self.dataset.name!r} has no raw id mapping; use internal ids")
        return ids == "raw" or (ids == "auto" and mapping is not None)

    def user_index(self, users: Sequence, ids: IdKind = "auto") -> tuple[np.ndarray, np.ndarray]:
        """Internal ids of ``users`` and a mask of which are known (unknown ones map to -1)."""
        if self._uses_raw(ids, self._raw_users):
            index = np.array([self._raw_users.get(str(u), -1) for u in users], dtype=np.int64)
        else:
            index = np.array([_as_int(u) for u in users], dtype=np.int64)
            index[(index < 0) | (index >= self.dataset.n_users)] = -1
        return index, index >= 0

    def item_ids(self, items: np.ndarray, ids: IdKind = "auto") -> list:
        if self._raw_items is not None and ids != "internal":
            return [self._raw_items[i] for i in items]
        return [int(i) for i in items]

    # ---- scoring ---------------------------------------------------------------------------
    @torch.no_grad()
    def score(self, users: Sequence, items: Sequence | None = None, ids: IdKind = "auto") -> np.ndarray:
        """Scores [len(users), len(items)] (all items when ``items`` is None)."""
        index, known = self.user_index(users, ids)
        if not known.all():
            raise DataError(f"unknown user {users[int(np.argmin(known))]!r}")
        scores = self._score(torch.as_tensor(index, device=self.device)).cpu().numpy()
        if items is None:
            return scores
        if self._item_index is not None and ids != "internal":
            columns = [self._item_index.get(str(i), -1) for i in items]
        else:
            columns = [_as_int(i) for i in items]
        bad = [item for item, col in zip(items, columns) if not 0 <= col < self.dataset.n_items]
        if bad:
            raise DataError(f"unknown item {bad[0]!r}")
        return scores[:, columns]

    @torch.no_grad()
    def recommend(self, users: Sequence, k: int = 10, exclude_seen: bool = True, ids: IdKind = "auto",
                  fallback: Literal["error", "popular"] = "error") -> list[Recommendation]:
        """Top-``k`` items per user, best first. ``exclude_seen`` removes the user's training
        items (the evaluator's mask, so lists equal the evaluator's rankings). Unknown users raise
        a DataError, or get the most popular training items with ``fallback="popular"``."""
        if k <= 0 or k > self.dataset.n_items:
            raise DataError(f"--k: must be between 1 and the number of items ({self.dataset.n_items}), got {k}")
        index, known = self.user_index(users, ids)
        if not known.all() and fallback == "error":
            raise DataError(f"unknown user {list(users)[int(np.argmin(known))]!r} "
                            f"(use fallback 'popular' to recommend the most popular items instead)")
        out: list[Recommendation] = []
        if known.any():
            top = masked_top_k(self._score, torch.as_tensor(index[known], device=self.device),
                               self._seen if exclude_seen else None, top_length_for(k, self.dataset.n_items))
            top_items = top.indices[:, :k].cpu().numpy()
            top_scores = top.values[:, :k].cpu().numpy()
        popularity = self.dataset.item_popularity()
        popular = np.argsort(-popularity, kind="stable")[:k]
        row = 0
        for user, is_known in zip(users, known):
            if is_known:
                out.append(Recommendation(user, self.item_ids(top_items[row], ids),
                                          [float(s) for s in top_scores[row]]))
                row += 1
            else:
                out.append(Recommendation(user, self.item_ids(popular, ids), [float(c) for c in popularity[popular]], True))
        return out

    def export_all(self, path: str | Path, k: int = 10, batch_size: int = 4096, exclude_seen: bool = True,
                   progress: bool = True) -> int:
        """Write top-``k`` for every user to a parquet file (columns user, rank, item, score),
        computed batch by batch and written atomically. Returns the number of rows."""
        import polars as pl
        from tqdm.auto import tqdm

        if k <= 0 or k > self.dataset.n_items:
            raise DataError(f"--k: must be between 1 and the number of items ({self.dataset.n_items}), got {k}")
        n_users = self.dataset.n_users
        raw_users = self.dataset.raw_user_ids
        frames = []
        for start in tqdm(range(0, n_users, batch_size), desc="recommend", unit="batch", disable=not progress):
            users = torch.arange(start, min(start + batch_size, n_users), device=self.device)
            top = masked_top_k(self._score, users, self._seen if exclude_seen else None,
                               top_length_for(k, self.dataset.n_items))
            internal = np.repeat(users.cpu().numpy(), k)
            items = top.indices[:, :k].cpu().numpy().ravel()
            frames.append(pl.DataFrame({
                "user": [str(raw_users[u]) for u in internal] if raw_users is not None else internal,
                "rank": np.tile(np.arange(1, k + 1, dtype=np.int32), len(users)),
                "item": [str(i) for i in self.item_ids(items)] if self._raw_items is not None else items,
                "score": top.values[:, :k].cpu().numpy().ravel(),
            }))
        table = pl.concat(frames)
        atomic_write(Path(path), lambda tmp: table.write_parquet(tmp))
        return table.height

def _lookup(raw_ids: np.ndarray | None) -> dict[str, int] | None:
    if raw_ids is None:
        return None
    return {str(raw): index for index, raw in enumerate(raw_ids) if raw is not None}


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def load_run(run_dir: str | Path, device: str = "auto", data_dir: str | Path | None = None) -> TrainedRun:
    """Load a run directory written by ``train`` (best checkpoint, checksum-verified data)."""
    return TrainedRun(_load_run(run_dir, device=device, data_dir=data_dir))


__all__ = ["Recommendation", "TrainedRun", "load_run", "train"]
