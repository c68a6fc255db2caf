"""Item-item graphs: modality kNN (chunked cosine top-K), merging, and a content-hash cache.

Conventions (MMRec): row i of a kNN graph lists item i's top-K neighbours j; propagation computes
h'_i = sum_j A_ij h_j, so in DGL an edge runs from neighbour j (src) to item i (dst). The
symmetric normalisation uses row sums only, as MMRec does for its directed kNN graphs:
A_ij = d_i^-1/2 s_ij d_j^-1/2 with d = row sums of the top-K weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from dgl_synergraph.errors import ConfigError
from dgl_synergraph.utils import atomic_write, native_bf16

Weighting = Literal["similarity", "binary"]
CACHE_VERSION = 3  # 2: the bf16 candidate search with an exact re-rank; 3: grouped block merge (ties)


@dataclass
class ItemGraph:
    """A weighted item -> item edge list (src = neighbour, dst = item)."""

    src: torch.Tensor
    dst: torch.Tensor
    weight: torch.Tensor
    n_items: int

    def as_relation(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.src, self.dst, self.weight

    def to_dense(self) -> torch.Tensor:
        """Dense matrix A[dst, src] (tests and tiny examples only)."""
        out = torch.zeros(self.n_items, self.n_items, dtype=self.weight.dtype)
        out.index_put_((self.dst, self.src), self.weight, accumulate=True)
        return out


def row_symmetric_normalise(dst: torch.Tensor, src: torch.Tensor, weight: torch.Tensor, n: int) -> torch.Tensor:
    """d_dst^-1/2 w d_src^-1/2 with d = row sums (sum over each item's own neighbour list)."""
    degree = torch.zeros(n, dtype=weight.dtype, device=weight.device).index_add_(0, dst, weight)
    inv_sqrt = torch.where(degree > 0, degree.clamp(min=1e-12).pow(-0.5), torch.zeros_like(degree))
    return inv_sqrt[dst] * weight * inv_sqrt[src]


@torch.no_grad()
def knn_graph(
    features: torch.Tensor | np.ndarray,
    k: int,
    weighting: Weighting = "similarity",
    self_loop: bool = True,
    chunk_rows: int = 4096,
    device: torch.device | str = "cpu",
    normalise: bool = True,
    search: Search | None = None,
) -> ItemGraph:
    """Cosine top-K graph over item features, computed ``chunk_rows`` rows at a time.

    Never materialises the |I| x |I| similarity matrix. Zero-norm rows get similarity 0 to every
    item (no NaN). With ``weighting="similarity"`` negative similarities are clamped to 0 so the
    degree normalisation stays real. ``search``: see :func:`_cosine_top_k` ("auto" takes the bf16
    candidate search with an exact fp32 re-rank where it pays, see :func:`bf16_search_pays`);
    None: the mode of the enclosing :func:`knn_search`, fp32 outside one.
    """
    x = torch.as_tensor(features, dtype=torch.float32, device=device)
    n = x.shape[0]
    if k <= 0:
        raise ConfigError(f"knn_k: must be positive, got {k}")
    k_eff = min(k, n if self_loop else n - 1)
    if k_eff <= 0:
        raise ConfigError(f"knn_k: the dataset has only {n} items")
    if weighting not in ("similarity", "binary"):
        raise ConfigError(f"knn weighting: expected 'similarity' or 'binary', got {weighting!r}")
    unit = F.normalize(x, dim=1)  # zero rows stay zero (eps in the norm)
    top_values, columns = _cosine_top_k(unit, unit, k_eff, chunk_rows, exclude_self=not self_loop,
                                        search=search or _search.get())
    dst = torch.arange(n, device=x.device).repeat_interleave(k_eff)
    src = columns.flatten()
    raw = _edge_weights(top_values.flatten(), weighting)
    weight = row_symmetric_normalise(dst, src, raw, n) if normalise else raw
    return ItemGraph(src.cpu(), dst.cpu(), weight.cpu(), n)


Search = Literal["auto", "fp32", "bf16"]
#: below this many catalogue rows the fp32 search is quick anyway
BF16_SEARCH_MIN_ROWS = 4096
_search: ContextVar[Search] = ContextVar("knn_search", default="fp32")


@contextmanager
def knn_search(mode: Search):
    """Build kNN graphs with ``mode`` inside the block (the run setting ``precision=bf16`` uses
    "auto": the bf16 candidate search where it pays). Outside, the search is exact fp32."""
    token = _search.set(mode)
    try:
        yield
    finally:
        _search.reset(token)


def bf16_search_pays(catalogue: torch.Tensor) -> bool:
    """Whether ``search="auto"`` takes the bf16 candidate search: a large catalogue on a CPU whose
    oneDNN multiplies bf16 natively (AVX-512 bf16 or AMX: about 3x fp32 on the 2-core machine)."""
    return catalogue.device.type == "cpu" and catalogue.shape[0] >= BF16_SEARCH_MIN_ROWS and native_bf16(catalogue.device)


def _cosine_top_k(query: torch.Tensor, catalogue: torch.Tensor, k: int, chunk_rows: int,
                  exclude_self: bool = False, search: Search = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """(values, indices) of the ``k`` largest ``query @ catalogue.T`` entries per query row (unit
    rows: cosine similarity), ``chunk_rows`` queries at a time. ``exclude_self``: query row i is
    catalogue row i and may not be its own neighbour.

    ``search="bf16"`` finds ``2k + 8`` candidates per row with bfloat16 products, then ranks them
    by their fp32 similarity: the values are always fp32, and the neighbours are the fp32 search's
    unless bf16 rounding (~1e-3 on a cosine) pushes a true top-k item below k + 8 others. That
    happens among near-ties: 0-0.005% of items on Baby, Sports and Clothing, but 15% on the
    synthetic Elec image features (README "Performance"), so it is taken only under ``precision=bf16``
    (MGCN's and FREEDOM's default "auto" resolves to it on such CPUs; their Baby three-seed checks
    included it)."""
    if exclude_self and query is not catalogue:  # only the symmetric search knows which row is "self"
        raise ValueError("exclude_self needs the catalogue itself as the query")
    if search == "auto":
        search = "bf16" if bf16_search_pays(catalogue) else "fp32"
    n_candidates = min(2 * k + 8, catalogue.shape[0] - int(exclude_self)) if search == "bf16" else k
    scan = catalogue.bfloat16() if search == "bf16" else catalogue
    if query is catalogue:
        values, indices = _symmetric_top(scan, n_candidates, chunk_rows, exclude_self)
    else:
        values, indices = _query_top(query.to(scan.dtype), scan, n_candidates, chunk_rows)
    if search == "bf16":
        best = [_exact_rerank(query[start : start + chunk_rows], catalogue, indices[start : start + chunk_rows], k)
                for start in range(0, query.shape[0], chunk_rows)]
        values, indices = torch.cat([v for v, _ in best]), torch.cat([i for _, i in best])
    return values, indices


def _query_top(query: torch.Tensor, scan: torch.Tensor, k: int, chunk_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``query @ scan.T`` per row, ``chunk_rows`` query rows at a time."""
    values, indices = [], []
    # One similarity buffer for every chunk: a fresh one per chunk fragmented the heap once
    # freed memory is kept (utils.keep_freed_memory), 16 GB of RSS for the Elec image graph.
    buffer = torch.empty(min(chunk_rows, query.shape[0]), scan.shape[0], dtype=scan.dtype, device=scan.device)
    for start in range(0, query.shape[0], chunk_rows):
        block = query[start : start + chunk_rows]
        top = torch.topk(torch.mm(block, scan.t(), out=buffer[: len(block)]), k, dim=1)
        values.append(top.values)
        indices.append(top.indices)
    return torch.cat(values), torch.cat(indices)


def _symmetric_top(scan: torch.Tensor, k: int, chunk_rows: int, exclude_self: bool
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` of ``scan @ scan.T`` per row from its upper block triangle only: the block of
    row chunk i and column chunk j > i serves chunk i's rows and, transposed, chunk j's, so half
    the products of the plain search (the kNN build is that product: 250 s of Elec's image graph)."""
    n = scan.shape[0]
    values = torch.full((n, k), float("-inf"), dtype=scan.dtype, device=scan.device)
    indices = torch.zeros((n, k), dtype=torch.long, device=scan.device)
    size = min(chunk_rows, n)
    buffer = torch.empty(size, size, dtype=scan.dtype, device=scan.device)
    for i in range(0, n, chunk_rows):
        rows = scan[i : i + chunk_rows]
        for j in range(i, n, chunk_rows):
            columns = scan[j : j + chunk_rows]
            sim = torch.mm(rows, columns.t(), out=buffer[: len(rows), : len(columns)])
            if j == i and exclude_self:
                sim.fill_diagonal_(float("-inf"))
            _merge_top(values, indices, i, sim, j)
            if j != i:
                _merge_top(values, indices, j, sim, i, transposed=True)
    return values, indices


#: columns per group in :func:`_merge_top`'s pre-selection (8 measured fastest for k = 10-28)
TOP_GROUP = 8


def _merge_top(values: torch.Tensor, indices: torch.Tensor, row_start: int, block: torch.Tensor, column_start: int,
               transposed: bool = False, group: int = TOP_GROUP):
    """Fold the similarity ``block`` (rows from ``row_start``, columns from ``column_start``;
    ``transposed``: fold ``block.T``, read in place) into the running per-row top-k.

    Exact, and ranks only k * ``group`` of each row's columns: the columns fall into strided
    groups (column c in group c mod G, so the group maxima are one vectorised reduction over the
    contiguous block), and a column can be among the row's k best only if its group's maximum is
    among the row's k largest group maxima (a group with a larger maximum holds a larger element,
    and fewer than k elements are larger). Ties among equal similarities may resolve differently
    from one top-k over the whole block."""
    k = values.shape[1]
    sim = block.t() if transposed else block
    n_rows, n_columns = sim.shape
    n_groups = n_columns // group
    if n_groups > k:
        grouped = n_groups * group
        if transposed:
            maxima = block[:grouped].view(group, n_groups, n_rows).amax(0).t()
        else:
            maxima = block[:, :grouped].view(n_rows, group, n_groups).amax(1)
        chosen = torch.topk(maxima, k, dim=1, sorted=False).indices
        columns = (chosen.unsqueeze(2) + n_groups * torch.arange(group, device=sim.device)).view(n_rows, k * group)
        if grouped < n_columns:  # the last columns, in no group: always candidates
            rest = torch.arange(grouped, n_columns, device=sim.device).expand(n_rows, -1)
            columns = torch.cat([columns, rest], 1)
        candidates = torch.gather(sim, 1, columns)
    else:
        columns = torch.arange(n_columns, device=sim.device).expand(n_rows, -1)
        candidates = sim
    rows = slice(row_start, row_start + n_rows)
    pooled_values = torch.cat([values[rows], candidates], 1)
    pooled_indices = torch.cat([indices[rows], columns + column_start], 1)
    best = torch.topk(pooled_values, k, dim=1)
    values[rows] = best.values
    indices[rows] = torch.gather(pooled_indices, 1, best.indices)


def _exact_rerank(block: torch.Tensor, catalogue: torch.Tensor, candidates: torch.Tensor, k: int,
                  rows_at_once: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best of each row's ``candidates`` by fp32 similarity, ``rows_at_once`` rows at a
    time (the gathered candidate rows are rows x candidates x dim floats)."""
    exact = torch.empty(candidates.shape, dtype=block.dtype, device=block.device)
    for start in range(0, len(block), rows_at_once):
        part = candidates[start : start + rows_at_once]
        exact[start : start + rows_at_once] = torch.einsum("rd,rcd->rc", block[start : start + rows_at_once],
                                                           catalogue[part])
    best = torch.topk(exact, k, dim=1)
    return best.values, torch.gather(candidates, 1, best.indices)


def _edge_weights(similarity: torch.Tensor, weighting: Weighting) -> torch.Tensor:
    """Raw kNN edge weights: the similarity clamped at 0, or 1 per kept neighbour."""
    return similarity.clamp(min=0) if weighting == "similarity" else torch.ones_like(similarity)


@torch.no_grad()
def content_neighbours(query: torch.Tensor | np.ndarray, catalogue: torch.Tensor | np.ndarray, k: int,
                       weighting: Weighting = "similarity", chunk_rows: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` catalogue rows by cosine similarity for each query row (items outside the
    catalogue, e.g. new ones), ``chunk_rows`` queries at a time: (index [n, k], weight [n, k]).

    Weights follow ``knn_graph``'s (clamped similarity, or 1 per neighbour) and are normalised
    over each query's row to sum to 1: a new item has no in-edges, so there is no symmetric
    degree to normalise by. A row whose similarities are all <= 0 gets equal weights."""
    catalogue = F.normalize(torch.as_tensor(catalogue, dtype=torch.float32), dim=1)
    query = F.normalize(torch.as_tensor(query, dtype=torch.float32), dim=1)
    k = min(k, catalogue.shape[0])
    values, indices = _cosine_top_k(query, catalogue, k, chunk_rows)
    raw = _edge_weights(values, weighting)
    total = raw.sum(1, keepdim=True)
    return indices, torch.where(total > 0, raw / total.clamp(min=1e-12), torch.full_like(raw, 1.0 / k))


def normalise_graph(graph: ItemGraph) -> ItemGraph:
    """The row-sum symmetric normalisation of an unnormalised graph."""
    return ItemGraph(graph.src, graph.dst, row_symmetric_normalise(graph.dst, graph.src, graph.weight, graph.n_items),
                     graph.n_items)


def merge_graphs(parts: list[tuple[float, ItemGraph]]) -> ItemGraph:
    """sum_p scale_p * A_p as one coalesced edge list (duplicate edges have their weights added)."""
    n = parts[0][1].n_items
    src = torch.cat([g.src for _, g in parts])
    dst = torch.cat([g.dst for _, g in parts])
    weight = torch.cat([scale * g.weight for scale, g in parts])
    keys, inverse = torch.unique(dst * n + src, return_inverse=True)
    merged = torch.zeros(len(keys), dtype=weight.dtype).index_add_(0, inverse, weight)
    keep = merged != 0
    keys, merged = keys[keep], merged[keep]
    return ItemGraph(keys % n, keys // n, merged, n)


def cache_dir() -> Path:
    return Path(os.environ.get("SYNERGRAPH_CACHE", Path.home() / ".cache" / "synergraph")) / "graphs"


def content_key(array: np.ndarray | torch.Tensor, **params) -> str:
    """Hash of an array's bytes, shape and dtype plus every parameter that shapes the graph."""
    data = np.ascontiguousarray(array.cpu().numpy() if isinstance(array, torch.Tensor) else array)
    digest = hashlib.sha256()
    digest.update(str((data.shape, str(data.dtype), CACHE_VERSION)).encode())
    digest.update(memoryview(data).cast("B"))
    digest.update(json.dumps(params, sort_keys=True).encode())
    return digest.hexdigest()[:32]


def cached(kind: str, key: str, build) -> ItemGraph:
    """Load the graph stored under ``kind-key`` or build and store it (atomically)."""
    path = cache_dir() / f"{kind}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as stored:
                return ItemGraph(torch.from_numpy(stored["src"]), torch.from_numpy(stored["dst"]),
                                 torch.from_numpy(stored["weight"]), int(stored["n_items"]))
        except (OSError, KeyError, ValueError):
            path.unlink(missing_ok=True)  # corrupt entry: rebuild below
    graph = build()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, src=graph.src.numpy(), dst=graph.dst.numpy(), weight=graph.weight.numpy(),
                     n_items=np.int64(graph.n_items))

    try:
        atomic_write(path, write)
    except OSError:
        pass  # a read-only cache only costs rebuild time
    return graph


def cached_knn_graph(features: np.ndarray, k: int, weighting: Weighting = "similarity", self_loop: bool = True,
                     device: torch.device | str = "cpu", normalise: bool = True) -> ItemGraph:
    """:func:`knn_graph` through the on-disk cache keyed by feature content and parameters."""
    search = _search.get()
    key = content_key(features, k=k, weighting=weighting, self_loop=self_loop, norm="row-sym" if normalise else "none",
                      search=search)
    return cached("knn", key, lambda: knn_graph(features, k, weighting, self_loop, device=device, normalise=normalise,
                                                search=search))
