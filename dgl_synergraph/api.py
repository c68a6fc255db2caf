"""Python API: ``train(config)``, ``resume(run_dir)`` and ``load_run(run_dir)``, the only loader
of a finished run (``eval``, ``recommend`` and ``report`` all read runs through it).

    >>> from dgl_synergraph import api
    >>> run = api.load_run("runs/baby-lightgcn-seed999")   # or load_run() for the latest run
    >>> run.recommend(["42"], k=10)          # raw ids when the dataset has id mappings
    >>> run.score([42], [0, 1, 2], ids="internal")
    >>> run.evaluate("test", ks=[20])

The config, metrics and history are read at once; the dataset (checksum-verified) and the best
model are loaded on first use, so reading many runs for a report stays cheap.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.loader import load_dataset
from dgl_synergraph.data.raw import as_int
from dgl_synergraph.errors import DataError, RunError
from dgl_synergraph.evaluation.evaluator import CSRTensor, RankingEvaluator, masked_top_k, split_evaluator, top_length_for
from dgl_synergraph.models.base import Recommender
from dgl_synergraph.training.configure import build_config
from dgl_synergraph.training.rundir import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    latest_run,
    load_checkpoint,
    load_model_state,
    read_history,
    read_metrics,
    read_saved,
)
from dgl_synergraph.training.trainer import model_for, resume, train
from dgl_synergraph.utils import atomic_write, resolve_device

IdKind = Literal["auto", "raw", "internal"]
log = logging.getLogger(__name__)


@dataclass
class Recommendation:
    user: object  # as the caller named it (raw or internal id)
    items: list  # raw item ids when a mapping exists, else internal ids
    scores: list[float]
    fallback: bool = False  # True when the user was unknown and got the popular items

    def as_dict(self) -> dict:
        return {"user": self.user, "items": self.items, "scores": self.scores, "fallback": self.fallback}


class TrainedRun:
    """A run directory, ready to answer "what should user u see?"."""

    def __init__(self, run_dir: str | Path, device: str = "auto", data_dir: str | Path | None = None,
                 force: bool = False):
        self.run_dir = Path(run_dir)
        if not self.run_dir.is_dir():
            raise RunError(f"--run {run_dir}: no such run directory")
        self.config, self._saved = read_saved(self.run_dir)
        self.metrics = read_metrics(self.run_dir)
        self.history = read_history(self.run_dir)
        self._device_name = device
        self._data_dir = data_dir
        self._force = force  # accept a dataset whose files changed since training

    @cached_property
    def device(self) -> torch.device:
        return resolve_device(self._device_name)

    @cached_property
    def dataset(self) -> Dataset:
        """The run's dataset, from its recorded folder (or ``data_dir``), checksum-verified."""
        data = self._saved["data"]
        path = Path(self._data_dir) / self.config.dataset if self._data_dir is not None else Path(data["path"])
        if not path.is_dir():
            raise RunError(f"{self.run_dir / CONFIG_FILE}: the run's data folder {path} is gone (pass --data-dir)")
        modalities = [f[: -len("_feat.npy")] for f in data["checksums"] if f.endswith("_feat.npy")]
        dataset = load_dataset(self.config.dataset, path=path, modalities=modalities)
        changed = [name for name, digest in data["checksums"].items() if dataset.checksums.get(name) != digest]
        if changed and not self._force:
            raise RunError(f"{path / changed[0]}: changed since the run was trained (checksum differs; "
                           f"--force uses it anyway)")
        if changed:
            log.warning("%s: changed since the run was trained; using it anyway (--force)", ", ".join(changed))
        return dataset

    @cached_property
    def model(self) -> Recommender:
        """The model at its best validation epoch, in eval mode."""
        dataset = self.dataset  # verified before the checkpoint is read
        checkpoint = load_checkpoint(self.run_dir, self.device)
        model = model_for(self.config, dataset, self.device)
        load_model_state(model, checkpoint["best_model_state"], self.run_dir / CHECKPOINT_FILE)
        return model.eval()

    @cached_property
    def _embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            return self.model.embeddings()

    @cached_property
    def _item_table(self) -> torch.Tensor:
        """Item embeddings as scored: the trained catalogue, then any items added since."""
        return self._embeddings[1].t().contiguous()

    def _score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [len(users), n_items] over the catalogue and added items (``Recommender.scorer``)."""
        return self._embeddings[0][users] @ self._item_table

    def _catalogue_score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores over the trained catalogue only (what evaluation ranks)."""
        return self._embeddings[0][users] @ self._item_table[:, : self.dataset.n_items]

    @property
    def n_items(self) -> int:
        """Items that can be recommended: the trained catalogue plus those added by :meth:`add_items`."""
        return self._item_table.shape[1] if "_item_table" in self.__dict__ else self.dataset.n_items

    @cached_property
    def _seen(self) -> CSRTensor:
        return CSRTensor(self.dataset.csr("train"), self.device)

    @cached_property
    def _raw_users(self) -> dict[str, int] | None:
        return _lookup(self.dataset.raw_user_ids)

    @cached_property
    def _raw_items(self) -> np.ndarray | None:
        return self.dataset.raw_item_ids

    @cached_property
    def _item_index(self) -> dict[str, int] | None:
        return _lookup(self._raw_items)

    # ---- evaluation ------------------------------------------------------------------------
    def evaluator(self, split: Literal["valid", "test"] = "test", ks: Sequence[int] = (10, 20, 50),
                  mask_valid: bool = False) -> RankingEvaluator:
        """Full-ranking evaluator of ``split`` (validation items masked in test when the run did,
        or when ``mask_valid`` says so)."""
        ks = sorted(set(ks))
        if not ks or ks[0] <= 0 or ks[-1] > self.dataset.n_items:
            raise DataError(f"--k: each K must be between 1 and the number of items ({self.dataset.n_items}), "
                            f"got {', '.join(map(str, ks)) or 'none'}")
        mask = mask_valid or self.config.mask_valid_in_test
        return split_evaluator(self.dataset, split, ks, self.config.eval_batch_size, self.device, mask_valid=mask)

    def evaluate(self, split: Literal["valid", "test"] = "test", ks: Sequence[int] = (10, 20, 50),
                 mask_valid: bool = False) -> dict[str, float]:
        """Metrics of the best model on ``split`` at each K."""
        return self.evaluator(split, ks, mask_valid).evaluate(self._catalogue_score)

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
            index = _internal_ids(users)
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
        return scores[:, self.item_index(items, ids)]

    @torch.no_grad()
    def recommend(self, users: Sequence, k: int = 10, exclude_seen: bool = True, ids: IdKind = "auto",
                  fallback: Literal["error", "popular"] = "error") -> list[Recommendation]:
        """Top-``k`` items per user, best first. ``exclude_seen`` removes the user's training
        items (the evaluator's mask, so lists equal the evaluator's rankings). Unknown users raise
        a DataError, or get the most popular training items with ``fallback="popular"``."""
        if k <= 0 or k > self.n_items:
            raise DataError(f"--k: must be between 1 and the number of items ({self.n_items}), got {k}")
        index, known = self.user_index(users, ids)
        if not known.all() and fallback == "error":
            raise DataError(f"unknown user {list(users)[int(np.argmin(known))]!r} "
                            f"(use fallback 'popular' to recommend the most popular items instead)")
        out: list[Recommendation] = []
        if known.any():
            top = masked_top_k(self._score, torch.as_tensor(index[known], device=self.device),
                               self._seen if exclude_seen else None, top_length_for(k, self.n_items))
            top_items = top.indices[:, :k].cpu().numpy()
            top_scores = top.values[:, :k].cpu().numpy()
        popularity = self.dataset.item_popularity()  # added items have none: never in this list
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

    def item_index(self, items: Sequence, ids: IdKind = "auto") -> np.ndarray:
        """Internal ids of ``items``; an unknown item raises a DataError naming it."""
        if self._uses_raw(ids, self._item_index):
            index = np.array([self._item_index.get(str(i), -1) for i in items], dtype=np.int64)
        else:
            index = _internal_ids(items)
        bad = [item for item, col in zip(items, index) if not 0 <= col < self.n_items]
        if bad:
            raise DataError(f"unknown item {bad[0]!r}")
        return index

    @torch.no_grad()
    def rank(self, user, candidates: Sequence, k: int | None = None, exclude_seen: bool = False,
             ids: IdKind = "auto") -> Recommendation:
        """Order ``candidates`` for ``user`` by the model's score, best first, and keep ``k``
        (all when None): the re-ranking stage after a candidate generator. ``exclude_seen`` drops
        candidates the user interacted with in training. Ties keep the candidates' order."""
        columns = self.item_index(candidates, ids)
        if len(set(columns.tolist())) != len(columns):
            raise DataError("candidates: each item may appear only once")
        index, known = self.user_index([user], ids)
        if not known[0]:
            raise DataError(f"unknown user {user!r}")
        scores = self._score(torch.as_tensor(index, device=self.device))[0, torch.as_tensor(columns)].cpu().numpy()
        keep = np.ones(len(columns), dtype=bool)
        if exclude_seen:
            seen = self.dataset.csr("train")
            keep = ~np.isin(columns, seen.indices[seen.indptr[index[0]]:seen.indptr[index[0] + 1]])
        order = [i for i in np.argsort(-scores, kind="stable") if keep[i]][:k]
        return Recommendation(user, [candidates[i] for i in order], [float(scores[i]) for i in order])

    @cached_property
    def _content(self) -> dict[str, torch.Tensor]:
        return {m: torch.nn.functional.normalize(torch.as_tensor(f, dtype=torch.float32), dim=1)
                for m, f in self.dataset.features.items()}

    @torch.no_grad()
    def similar_items(self, item, k: int = 10, ids: IdKind = "auto") -> Recommendation:
        """The ``k`` items whose content is closest to ``item``'s: cosine similarity of each
        modality's raw features, averaged over the modalities (the item itself left out).
        ``Recommendation.user`` holds the query item."""
        if not self._content:
            raise DataError(f"dataset {self.dataset.name!r} has no item features to compare")
        if k <= 0 or k >= self.n_items:
            raise DataError(f"--k: must be between 1 and the number of other items ({self.n_items - 1}), got {k}")
        row = int(self.item_index([item], ids)[0])
        similarity = sum(table @ table[row] for table in self._content.values()) / len(self._content)
        similarity[row] = -torch.inf
        top = torch.topk(similarity, k)
        return Recommendation(item, self.item_ids(top.indices.numpy(), ids), top.values.tolist())

    # ---- new items -------------------------------------------------------------------------
    def add_items(self, features: dict[str, np.ndarray], ids: Sequence | None = None) -> list:
        """Add items that were not in training, described by their content only: ``features``
        maps each of the model's modalities to a [n_new, dim] array (the same feature space as
        the dataset's ``<modality>_feat.npy``). Each new item joins the model's item graphs
        through its top-K content neighbours in the trained catalogue and gets an embedding from
        the model's own modality path (``Recommender.cold_item_embeddings``; rules per model in
        docs/cold_start.md), without retraining. They are then scored, recommended, ranked and
        compared like any item. ``ids``: their raw ids (required when the dataset has id
        mappings); otherwise they get the next internal ids. Returns the ids."""
        from dgl_synergraph.graphs.knn import content_neighbours

        model = self.model
        if model.cold_start_knn is None:
            model.cold_item_embeddings({})  # raises: this model has no content path
        modalities = list(model.projections)
        missing = [m for m in modalities if m not in features]
        if missing:
            raise DataError(f"new items: no {missing[0]!r} features (this model uses {', '.join(modalities)})")
        arrays = {m: self._new_feature_array(m, features[m]) for m in modalities}
        n_new = {len(a) for a in arrays.values()}
        if len(n_new) != 1 or 0 in n_new:
            raise DataError("new items: every modality must give the same, non-zero number of rows "
                            f"(got {', '.join(f'{m}: {len(a)}' for m, a in arrays.items())})")
        count = n_new.pop()
        new_ids = self._new_item_ids(ids, count)
        k, weighting = model.cold_start_knn
        neighbours = {m: tuple(t.to(self.device) for t in content_neighbours(arrays[m], self.dataset.features[m],
                                                                              k, weighting))
                      for m in modalities}
        embeddings = model.cold_item_embeddings(neighbours)
        first = self.n_items
        self._item_table = torch.cat([self._item_table, embeddings.t()], dim=1).contiguous()
        for m, table in self._content.items():  # similar_items covers the new items too
            extra = arrays.get(m)
            extra = torch.nn.functional.normalize(torch.as_tensor(extra), dim=1) if extra is not None \
                else torch.zeros(count, table.shape[1])
            self._content[m] = torch.cat([table, extra])
        if self._raw_items is not None:
            self._raw_items = np.concatenate([self._raw_items, np.array(new_ids, dtype=object)])
            self._item_index.update({raw: first + i for i, raw in enumerate(new_ids)})
        return new_ids

    def _new_feature_array(self, modality: str, values) -> np.ndarray:
        try:
            array = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):  # ragged rows or non-numbers
            raise DataError(f"new items: {modality} features are not a matrix of numbers (rows of equal length)") from None
        dim = self.dataset.features[modality].shape[1]
        if array.ndim != 2 or array.shape[1] != dim:
            raise DataError(f"new items: {modality} features must be [n, {dim}] (the dataset's), got {list(array.shape)}")
        if not np.isfinite(array).all():
            raise DataError(f"new items: {modality} features contain NaN or infinite values")
        return array

    def _new_item_ids(self, ids: Sequence | None, count: int) -> list:
        if self._raw_items is None:
            if ids is not None:
                raise DataError(f"dataset {self.dataset.name!r} has no raw item ids: new items get internal ids, omit ids")
            return list(range(self.n_items, self.n_items + count))
        if ids is None or len(ids) != count:
            raise DataError(f"new items: give one id per item ({count}), got {0 if ids is None else len(ids)}")
        ids = [str(i) for i in ids]
        taken = [i for i in ids if i in self._item_index]
        if taken or len(set(ids)) != len(ids):
            raise DataError(f"new items: id {(taken or ids)[0]!r} is already taken" if taken else
                            "new items: ids repeat")
        return ids

    def export_all(self, path: str | Path, k: int = 10, batch_size: int = 4096, exclude_seen: bool = True,
                   progress: bool = True) -> int:
        """Write top-``k`` for every user to a parquet file (columns user, rank, item, score),
        computed batch by batch and written atomically. Returns the number of rows."""
        import polars as pl
        from tqdm.auto import tqdm

        if k <= 0 or k > self.n_items:
            raise DataError(f"--k: must be between 1 and the number of items ({self.n_items}), got {k}")
        n_users = self.dataset.n_users
        raw_users = self.dataset.raw_user_ids
        frames = []
        for start in tqdm(range(0, n_users, batch_size), desc="recommend", unit="batch", disable=not progress):
            users = torch.arange(start, min(start + batch_size, n_users), device=self.device)
            top = masked_top_k(self._score, users, self._seen if exclude_seen else None,
                               top_length_for(k, self.n_items))
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


def _internal_ids(values: Sequence) -> np.ndarray:
    """Integer ids; anything that is not an integer becomes -1 (unknown)."""
    return np.array([-1 if (i := as_int(v)) is None else i for v in values], dtype=np.int64)


def load_run(run_dir: str | Path | None = None, device: str = "auto", data_dir: str | Path | None = None,
             force: bool = False) -> TrainedRun:
    """Open a run directory written by ``train``; without ``run_dir``, the latest run under
    ``$SYNERGRAPH_RUNS`` (default ``runs/``). ``force`` accepts data whose checksums differ
    from the ones recorded at training (the dataset must still fit the model)."""
    return TrainedRun(run_dir if run_dir is not None else latest_run(), device=device, data_dir=data_dir,
                      force=force)


__all__ = ["Recommendation", "TrainedRun", "build_config", "load_run", "resume", "train"]
