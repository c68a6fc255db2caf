"""Collaborative item-item graph from TRAINING interactions: co-occurrence C = R^T R.

C_ij counts the training users who interacted with both i and j; the diagonal is dropped.
Optionally C_ij / sqrt(n_i n_j) (cosine co-occurrence, default) so popular items do not dominate.
Each item keeps its top-k_c neighbours (ties broken by the lower item id), then the graph gets
the same row-sum symmetric normalisation as the modality kNN graphs. Computed in item blocks
(R[:, block]^T R), so an Elec-size dataset never builds |I| x |I| at once.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from dgl_synergraph.errors import ConfigError
from dgl_synergraph.graphs.knn import ItemGraph, cached, content_key, row_symmetric_normalise


def cooccurrence_graph(train_pairs: np.ndarray, n_users: int, n_items: int, k: int, cosine: bool = True,
                       block_items: int = 4096, normalise: bool = True) -> ItemGraph:
    if k <= 0:
        raise ConfigError(f"cooc_k: must be positive, got {k}")
    r = sp.csr_matrix((np.ones(len(train_pairs), dtype=np.float64), (train_pairs[:, 0], train_pairs[:, 1])),
                      shape=(n_users, n_items))
    r.data[:] = 1.0  # duplicate pairs count once
    rc = r.tocsc()
    degree = np.asarray(r.sum(0)).ravel()
    inv_sqrt = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1)), 0.0)
    srcs, dsts, vals = [], [], []
    for start in range(0, n_items, block_items):
        stop = min(start + block_items, n_items)
        block = (rc[:, start:stop].T @ r).tocoo()  # rows = items start..stop, cols = all items
        rows, cols, values = block.row + start, block.col, block.data
        keep = rows != cols
        rows, cols, values = rows[keep], cols[keep], values[keep]
        if cosine:
            values = values * inv_sqrt[rows] * inv_sqrt[cols]
        # per row: value descending, then column ascending; keep the first k
        order = np.lexsort((cols, -values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        first = np.searchsorted(rows, rows, side="left")
        rank = np.arange(len(rows)) - first
        top = rank < k
        dsts.append(rows[top])
        srcs.append(cols[top])
        vals.append(values[top])
    dst = torch.as_tensor(np.concatenate(dsts), dtype=torch.int64)
    src = torch.as_tensor(np.concatenate(srcs), dtype=torch.int64)
    weight = torch.as_tensor(np.concatenate(vals), dtype=torch.float32)
    if normalise:
        weight = row_symmetric_normalise(dst, src, weight, n_items)
    return ItemGraph(src, dst, weight, n_items)


def cached_cooccurrence_graph(train_pairs: np.ndarray, n_users: int, n_items: int, k: int, cosine: bool = True,
                              normalise: bool = True) -> ItemGraph:
    key = content_key(np.ascontiguousarray(train_pairs, dtype=np.int64), n_users=n_users, n_items=n_items, k=k,
                      cosine=cosine, norm="row-sym" if normalise else "none")
    return cached("cooc", key, lambda: cooccurrence_graph(train_pairs, n_users, n_items, k, cosine, normalise=normalise))
