"""The in-memory dataset every model, sampler and evaluator reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

SPLITS = ("train", "valid", "test")


@dataclass
class Dataset:
    """Interactions split into train/valid/test plus per-modality item features.

    ``train``, ``valid`` and ``test`` are int64 arrays of shape (n, 2) holding (user, item) rows.
    ``features`` maps a modality name (``image``, ``text`` ...) to a float32 array whose row i
    belongs to item i.
    """

    name: str
    n_users: int
    n_items: int
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None
    checksums: dict[str, str] = field(default_factory=dict)
    dropped_cold_users: dict[str, int] = field(default_factory=dict)
    raw_user_ids: np.ndarray | None = None
    raw_item_ids: np.ndarray | None = None

    def split(self, name: str) -> np.ndarray:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {SPLITS}")
        return getattr(self, name)

    def csr(self, name: str) -> sp.csr_matrix:
        """Binary user x item matrix of one split (sparse; never densify for a whole dataset)."""
        return self._csr_cache[name]

    @cached_property
    def _csr_cache(self) -> dict[str, sp.csr_matrix]:
        out = {}
        for name in SPLITS:
            pairs = self.split(name)
            data = np.ones(len(pairs), dtype=np.float32)
            out[name] = sp.csr_matrix(
                (data, (pairs[:, 0], pairs[:, 1])), shape=(self.n_users, self.n_items)
            )
            out[name].sort_indices()
        return out

    @property
    def modalities(self) -> list[str]:
        return sorted(self.features)

    def item_popularity(self) -> np.ndarray:
        """Number of training interactions of each item."""
        return np.bincount(self.train[:, 1], minlength=self.n_items)

    def summary(self) -> dict:
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "train": len(self.train),
            "valid": len(self.valid),
            "test": len(self.test),
            "modalities": {m: list(f.shape) for m, f in sorted(self.features.items())},
        }
