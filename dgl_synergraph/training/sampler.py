"""Uniform negative sampling with rejection of the user's training items (vectorised)."""

from __future__ import annotations

import numpy as np
import torch

from dgl_synergraph.errors import DataError

MAX_ROUNDS = 1000


class NegativeSampler:
    """Draws one negative per (user, positive) from the items seen in training.

    A draw that hits one of the user's training items is redrawn, so a negative is never a
    training positive. Membership is a binary search in the sorted ``user * n_items + item`` keys.
    """

    def __init__(self, train_pairs: np.ndarray, n_items: int, generator: torch.Generator):
        users = torch.as_tensor(train_pairs[:, 0], dtype=torch.int64)
        items = torch.as_tensor(train_pairs[:, 1], dtype=torch.int64)
        self.n_items = n_items
        self.keys = torch.sort(users * n_items + items).values
        self.candidates = torch.unique(items)
        self.generator = generator
        per_user = torch.bincount(users)
        if int(per_user.max()) >= len(self.candidates):
            user = int(per_user.argmax())
            raise DataError(f"user {user} has interacted with every training item; no negative can be sampled")

    def is_positive(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        keys = users * self.n_items + items
        pos = torch.searchsorted(self.keys, keys).clamp(max=len(self.keys) - 1)
        return self.keys[pos] == keys

    def sample(self, users: torch.Tensor) -> torch.Tensor:
        users = users.cpu()
        draw = lambda n: self.candidates[torch.randint(len(self.candidates), (n,), generator=self.generator)]  # noqa: E731
        negatives = draw(len(users))
        todo = torch.nonzero(self.is_positive(users, negatives)).flatten()
        for _ in range(MAX_ROUNDS):
            if len(todo) == 0:
                return negatives
            negatives[todo] = draw(len(todo))
            todo = todo[self.is_positive(users[todo], negatives[todo])]
        raise RuntimeError("negative sampling did not converge")  # unreachable with the check above


class BPRBatches:
    """One epoch of (user, positive, negative) batches: the training pairs shuffled, one fresh
    negative per pair, cut into ``batch_size`` slices."""

    def __init__(self, train_pairs: np.ndarray, n_items: int, generator: torch.Generator):
        self.users = torch.as_tensor(train_pairs[:, 0])
        self.items = torch.as_tensor(train_pairs[:, 1])
        self.sampler = NegativeSampler(train_pairs, n_items, generator)
        self.generator = generator

    def __len__(self) -> int:
        return len(self.users)

    def count(self, batch_size: int) -> int:
        """Batches in one epoch (the last one may be short)."""
        return -(-len(self.users) // batch_size)

    def epoch(self, batch_size: int):
        order = torch.randperm(len(self.users), generator=self.generator)
        users, positives = self.users[order], self.items[order]
        negatives = self.sampler.sample(users)
        for start in range(0, len(users), batch_size):
            stop = start + batch_size
            yield users[start:stop], positives[start:stop], negatives[start:stop]
