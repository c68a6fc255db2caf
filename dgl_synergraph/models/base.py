"""What every recommender exposes to the trainer, evaluator and API."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dgl_synergraph.errors import DataError, require
from dgl_synergraph.nn.multimodal import ModalityProjection

#: per modality: the new items' top-K catalogue neighbours [n_new, K] and their weights (rows sum to 1)
Neighbours = dict[str, tuple[torch.Tensor, torch.Tensor]]


def positive(**values: float) -> None:
    """Reject any value <= 0, naming it (``positive(cl_temperature=t)``)."""
    for name, value in values.items():
        require(value > 0, f"{name}: must be > 0, got {value}")


def non_negative(**values: float) -> None:
    """Reject any value < 0, naming it (layer counts, loss weights)."""
    for name, value in values.items():
        require(value >= 0, f"{name}: must be >= 0, got {value}")


def xavier_table(rows: int, dim: int) -> nn.Parameter:
    """An ID embedding table with Xavier-uniform initialisation (MMRec's default)."""
    positive(embedding_dim=dim)
    return nn.Parameter(nn.init.xavier_uniform_(torch.empty(rows, dim)))


class Recommender(nn.Module):
    """A model scores users against all items through a (user, item) embedding pair.

    Subclasses implement :meth:`embeddings` (final user and item tables) and :meth:`loss`.
    Models with nothing to learn set ``trainable = False``.
    """

    trainable: bool = True
    #: (K, weighting) of the content neighbours a new item takes (``cold_item_embeddings``);
    #: None for models without a content path
    cold_start_knn: tuple[int, str] | None = None
    #: dtype of the in-batch similarity products of contrastive losses (``losses.info_nce``); None
    #: keeps the embeddings' float32; :func:`set_precision` makes it bfloat16 under ``precision=bf16``
    similarity_dtype: torch.dtype | None = None

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss(self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor) -> dict[str, torch.Tensor]:
        """Named loss terms for one batch; the trainer minimises their sum."""
        raise NotImplementedError

    def on_epoch_start(self) -> None:
        """Called by the trainer before each training epoch (e.g. to resample a pruned graph)."""

    def training_diagnostics(self) -> dict[str, float]:
        """Numbers worth logging at each evaluation (e.g. gate statistics); none by default."""
        return {}

    def cold_item_embeddings(self, neighbours: Neighbours) -> torch.Tensor:
        """Final embeddings [n_new, d] of items that were not in training, from their content
        alone: ``neighbours[m]`` are their top-K catalogue neighbours by cosine similarity of the
        raw features of modality ``m`` (K and weighting from :attr:`cold_start_knn`). The rule of
        each model is in docs/cold_start.md. ID-only models have no content path."""
        raise DataError(f"{type(self).__name__} scores items by their ID embeddings only: it cannot score "
                        f"items that were not in training (use a multimodal model: mgcn, synergraph, siger, freedom)")

    @torch.no_grad()
    def scorer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Return ``score(users) -> [len(users), n_items]`` with embeddings computed once."""
        user_emb, item_emb = self.embeddings()
        item_t = item_emb.t().contiguous()
        return lambda users: user_emb[users] @ item_t


def set_precision(model: Recommender, precision: str) -> None:
    """``"bf16"``: every modality projection of ``model`` and its contrastive losses' similarity
    products compute in bfloat16 (float32 accumulation, float32 outputs); ``"fp32"``: none do."""
    bf16 = precision == "bf16"
    model.similarity_dtype = torch.bfloat16 if bf16 else None
    for module in model.modules():
        if isinstance(module, ModalityProjection):
            module.use_bfloat16(bf16)


def batch_rows(users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A BPR batch as its distinct users and items and each entry's position among them:
    ``user_rows, item_rows, users_at, pos_at, neg_at``, so that ``user_rows[users_at] == users``
    (likewise for the items). A training step computes its views at these rows only."""
    user_rows, users_at = torch.unique(users, return_inverse=True)
    item_rows, items_at = torch.unique(torch.cat([pos_items, neg_items]), return_inverse=True)
    return user_rows, item_rows, users_at, items_at[: len(pos_items)], items_at[len(pos_items):]


def from_neighbours(rows: torch.Tensor, neighbours: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """One propagation step into new items: the weighted sum of their neighbours' ``rows``."""
    index, weight = neighbours
    return (rows[index] * weight[..., None]).sum(1)


def imputed_behaviour(rows: torch.Tensor, neighbours: Neighbours, shares: dict[str, float] | None = None) -> torch.Tensor:
    """A new item's behaviour (user-item) view, which needs the ID embedding and interactions it
    lacks, imputed from its content neighbours' ``rows``: the direction of their weighted mean
    (each modality's neighbours, averaged over the modalities or mixed by ``shares``) with their
    weighted mean length. A plain mean would be shorter than any of them (they point in different
    directions), and with dot-product scores a short vector ranks below the whole catalogue:
    on the sample, held-out items then ranked below random."""
    shares = shares or {m: 1.0 / len(neighbours) for m in neighbours}
    mean = sum(share * from_neighbours(rows, neighbours[m]) for m, share in shares.items())
    length = sum(share * from_neighbours(rows.norm(dim=1, keepdim=True), neighbours[m]) for m, share in shares.items())
    return mean * (length / mean.norm(dim=1, keepdim=True).clamp(min=1e-12))
