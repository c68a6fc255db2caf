"""Full-ranking evaluation in user batches (MMRec protocol).

Every item is scored for each evaluated user; the user's training items (and optionally other
splits' items) are masked to -inf; the top-K list is compared with the held-out items. Work is
done per batch of users with tensor ops: no per-user Python loop, and no |U| x |I| matrix
beyond one batch.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import scipy.sparse as sp
import torch

from dgl_synergraph.evaluation.metrics import metric_sums

# The top list is always at least this long, so rankings (and tie order) do not depend on
# which K a caller asks for.
MIN_TOP_LENGTH = 50


class CSRTensor:
    """A user x item CSR matrix as torch tensors, with a vectorised row gather."""

    def __init__(self, matrix: sp.csr_matrix, device: torch.device):
        matrix = matrix.tocsr()
        self.indptr = torch.as_tensor(matrix.indptr, dtype=torch.int64, device=device)
        self.indices = torch.as_tensor(matrix.indices, dtype=torch.int64, device=device)

    def row_counts(self, rows: torch.Tensor) -> torch.Tensor:
        return self.indptr[rows + 1] - self.indptr[rows]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(position of the row within ``rows``, column) for every stored entry of those rows."""
        counts = self.row_counts(rows)
        starts = self.indptr[rows]
        owner = torch.repeat_interleave(torch.arange(len(rows), device=rows.device), counts)
        offsets = torch.arange(int(counts.sum()), device=rows.device) - torch.repeat_interleave(counts.cumsum(0) - counts, counts)
        return owner, self.indices[starts[owner] + offsets]


#: floats in one block of scores on the CPU (16 MB): scoring and ranking a block that stays near
#: the cache is faster than one pass over a whole batch (2 cores, valid split: Baby 0.43 s
#: against 0.60 s with 256 MB blocks; Elec-size, 8,192 users, 1.02 s against 1.57 s)
SCORE_BLOCK = 1 << 22
#: the same on an accelerator (256 MB): few large products; a 4,096-user batch over Elec's 63,001
#: items would be 1 GB, kept by the allocator beside the training state
ACCELERATOR_SCORE_BLOCK = 1 << 26


def top_length_for(k: int, n_items: int) -> int:
    """Length of the ranked list computed for a cut-off K (at least MIN_TOP_LENGTH)."""
    return min(max(k, MIN_TOP_LENGTH), n_items)


@torch.no_grad()
def masked_top_k(score_fn: Callable[[torch.Tensor], torch.Tensor], users: torch.Tensor, mask: CSRTensor | None,
                 length: int):
    """Scores of ``users`` with ``mask``ed items at -inf, then ``torch.topk`` of ``length``.

    Shared by evaluation and recommendation so both rank identically. ``score_fn`` returns a new
    tensor (as ``Recommender.scorer`` does): it is masked in place."""
    scores = score_fn(users).float()
    if mask is not None:
        owner, cols = mask.gather(users)
        scores[owner, cols] = float("-inf")
    return torch.topk(scores, length, dim=1)


class RankingEvaluator:
    """Evaluate a scoring function against one held-out split."""

    def __init__(
        self,
        target: sp.csr_matrix,
        masks: list[sp.csr_matrix],
        ks: list[int],
        batch_size: int = 4096,
        device: torch.device | str = "cpu",
    ):
        if not ks or any(k <= 0 for k in ks):
            raise ValueError("ks must be positive")
        self.device = torch.device(device)
        self.ks = sorted(set(ks))
        self.top_length = top_length_for(max(self.ks), target.shape[1])
        if max(self.ks) > target.shape[1]:
            raise ValueError(f"K={max(self.ks)} is larger than the number of items ({target.shape[1]})")
        self.batch_size = batch_size
        self.n_items = target.shape[1]
        self.target = CSRTensor(target, self.device)
        mask = masks[0].copy() if masks else sp.csr_matrix(target.shape, dtype=np.float32)
        for extra in masks[1:]:
            mask = mask + extra
        self.mask = CSRTensor(mask.tocsr(), self.device)
        counts = np.diff(target.tocsr().indptr)
        self.users = torch.as_tensor(np.flatnonzero(counts > 0), dtype=torch.int64, device=self.device)
        # sorted user * n_items + item keys of the held-out pairs: hits are a binary search
        coo = target.tocoo()
        self.target_keys = torch.sort(torch.as_tensor(coo.row.astype(np.int64) * self.n_items + coo.col,
                                                      device=self.device)).values

    @property
    def n_users(self) -> int:
        return len(self.users)

    @torch.no_grad()
    def top_items(self, score_fn: Callable[[torch.Tensor], torch.Tensor], users: torch.Tensor) -> torch.Tensor:
        """Masked top list [len(users), top_length] of item ids, best first; scored at most
        ``SCORE_BLOCK`` scores at a time (each row is ranked alone, so the split changes nothing)."""
        block = SCORE_BLOCK if self.device.type == "cpu" else ACCELERATOR_SCORE_BLOCK
        rows = max(1, block // self.n_items)
        return torch.cat([masked_top_k(score_fn, part, self.mask, self.top_length).indices
                          for part in users.split(rows)])


    def _is_target(self, keys: torch.Tensor) -> torch.Tensor:
        if len(self.target_keys) == 0:
            return torch.zeros_like(keys, dtype=torch.bool)
        position = torch.searchsorted(self.target_keys, keys).clamp(max=len(self.target_keys) - 1)
        return self.target_keys[position] == keys

    @property
    def n_batches(self) -> int:
        return -(-self.n_users // self.batch_size)

    @torch.no_grad()
    def batch_sums(self, score_fn: Callable[[torch.Tensor], torch.Tensor],
                   batches: Iterable[int]) -> dict[int, dict[str, torch.Tensor]]:
        """Per-metric sums of the user batches ``batches`` (indices into the batch sequence)."""
        out = {}
        for index in batches:
            users = self.users[index * self.batch_size : (index + 1) * self.batch_size]
            top = self.top_items(score_fn, users)
            hits = self._is_target(users[:, None] * self.n_items + top)
            out[index] = {key: value.cpu() for key, value in
                          metric_sums(hits, self.target.row_counts(users), self.ks).items()}
        return out

    def evaluate(self, score_fn: Callable[[torch.Tensor], torch.Tensor], shard: tuple[int, int] = (0, 1),
                 gather: Callable[[dict], dict] | None = None) -> dict[str, float]:
        """Mean metrics over the split's users. ``shard=(rank, size)`` ranks only the batches
        ``rank, rank + size, ...``; ``gather`` merges every shard's batch sums (across processes),
        which are then added in batch order: the result equals the unsharded one exactly."""
        rank, size = shard
        sums = self.batch_sums(score_fn, range(rank, self.n_batches, size))
        if gather is not None:
            sums = gather(sums)
        totals: dict[str, torch.Tensor] = {}
        for index in range(self.n_batches):
            for key, value in sums[index].items():
                totals[key] = totals.get(key, 0) + value
        n = max(self.n_users, 1)
        return {key: float(value) / n for key, value in sorted(totals.items())}


def split_evaluator(dataset, split: str, ks: list[int], batch_size: int, device, mask_valid: bool = False) -> RankingEvaluator:
    """The protocol evaluator for ``valid`` or ``test``: only training items are masked
    (MMRec); ``mask_valid`` also masks validation items when testing."""
    masks = [dataset.csr("train")]
    if mask_valid and split == "test":
        masks.append(dataset.csr("valid"))
    return RankingEvaluator(dataset.csr(split), masks, ks, batch_size, device)
