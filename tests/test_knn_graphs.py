"""Modality kNN graphs: chunked builder equals a dense reference; cache; edge cases."""

import numpy as np
import pytest
import torch

from dgl_synergraph.graphs import knn as knn_module
from dgl_synergraph.graphs.hetero import ITEM, build_heterograph
from dgl_synergraph.graphs.knn import ItemGraph, cached_knn_graph, knn_graph, merge_graphs
from dgl_synergraph.nn.propagation import ItemGraphEncoder


def dense_reference(x: np.ndarray, k: int, weighting: str, self_loop: bool) -> np.ndarray:
    """MMRec's construction on the full matrix: cosine, top-k per row, row-sum sym. norm."""
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    if not self_loop:
        np.fill_diagonal(sim, -np.inf)
    adj = np.zeros_like(sim)
    for i in range(len(x)):
        top = np.argsort(-sim[i], kind="stable")[:k]
        adj[i, top] = np.maximum(sim[i, top], 0) if weighting == "similarity" else 1.0
    deg = adj.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.where(deg > 0, deg, 1)), 0)
    return inv[:, None] * adj * inv[None, :]


@pytest.mark.parametrize("search", ["fp32", "bf16"])
@pytest.mark.parametrize("weighting", ["similarity", "binary"])
@pytest.mark.parametrize("self_loop", [True, False])
@pytest.mark.parametrize("n_items, chunk_rows", [(23, 5), (300, 160)])  # blocks too small to group; grouped
def test_chunked_knn_equals_dense_reference(weighting, self_loop, search, n_items, chunk_rows):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_items, 6)).astype(np.float32)
    graph = knn_graph(x, k=4, weighting=weighting, self_loop=self_loop, chunk_rows=chunk_rows, search=search)
    expected = dense_reference(x.astype(np.float64), 4, weighting, self_loop)
    got = graph.to_dense().numpy()
    assert ((got != 0) == (expected != 0)).all()  # same neighbours
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)  # same weights
    assert len(graph.src) == n_items * 4
    assert self_loop == bool((graph.src == graph.dst).any())


@pytest.mark.parametrize("transposed", [False, True])
@pytest.mark.parametrize("n_rows, n_columns, k", [(37, 203, 5), (64, 64, 7), (9, 40, 6), (20, 17, 3), (5, 12, 6)])
def test_grouped_top_k_merge_keeps_the_k_largest_values_with_ties(transposed, n_rows, n_columns, k):
    """The block merge ranks only the columns of each row's k best strided groups; the values it
    keeps must be the k largest of (running top-k + block) even when many similarities tie and
    when the block width is not a multiple of the group size (or too narrow to group)."""
    generator = torch.Generator().manual_seed(n_rows + n_columns)
    shape = (n_columns, n_rows) if transposed else (n_rows, n_columns)
    block = torch.randint(0, 6, shape, generator=generator).float() / 5  # few levels: many ties
    block[0, :3] = float("-inf")
    sim = block.t() if transposed else block
    running_values = torch.sort(torch.rand(n_rows + 4, k, generator=generator), dim=1, descending=True).values
    running_indices = torch.randint(0, 1000, (n_rows + 4, k), generator=generator) + 5000  # columns elsewhere
    pooled = torch.cat([running_values[2 : 2 + n_rows], sim], 1)
    values, indices = running_values.clone(), running_indices.clone()
    knn_module._merge_top(values, indices, 2, block, 300, transposed=transposed, group=4)
    assert torch.equal(values[2 : 2 + n_rows], torch.topk(pooled, k, dim=1).values)
    everything = torch.cat([running_indices[2 : 2 + n_rows], torch.arange(n_columns).expand(n_rows, -1) + 300], 1)
    for row in range(n_rows):  # each kept index is a distinct column that holds the kept value
        kept = indices[2 + row].tolist()
        assert len(set(kept)) == k
        where = [everything[row].tolist().index(column) for column in kept]
        assert torch.equal(pooled[row, where], values[2 + row])
    assert torch.equal(values[:2], running_values[:2]) and torch.equal(indices[n_rows + 2 :], running_indices[n_rows + 2 :])


def test_zero_norm_rows_and_negative_similarity_give_no_nan():
    x = np.array([[0, 0], [1, 0], [0, 1], [-1, 0], [0, 0]], dtype=np.float32)
    graph = knn_graph(x, k=2)
    assert torch.isfinite(graph.weight).all()
    # the zero rows only see similarity 0, so they send and receive nothing
    dense = graph.to_dense()
    assert dense[0].abs().sum() == 0 and dense[4].abs().sum() == 0


def test_knn_graph_is_cached_by_content_and_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    x = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
    first = cached_knn_graph(x, 3)
    files = list((tmp_path / "graphs").iterdir())
    assert len(files) == 1

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setattr(knn_module, "knn_graph", fail)
    second = cached_knn_graph(x, 3)
    assert torch.equal(first.src, second.src) and torch.allclose(first.weight, second.weight)
    with pytest.raises(AssertionError, match="rebuilt"):
        cached_knn_graph(x, 4)  # another K is another cache entry
    with pytest.raises(AssertionError, match="rebuilt"):
        cached_knn_graph(x + 1, 3)  # other content is another entry


def test_merge_graphs_adds_weights_of_shared_edges():
    a = ItemGraph(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([1.0, 2.0]), 3)
    b = ItemGraph(torch.tensor([0, 2]), torch.tensor([1, 0]), torch.tensor([4.0, 8.0]), 3)
    merged = merge_graphs([(0.25, a), (0.5, b)]).to_dense()
    expected = torch.zeros(3, 3)
    expected[1, 0] = 0.25 * 1 + 0.5 * 4
    expected[2, 1] = 0.25 * 2
    expected[0, 2] = 0.5 * 8
    assert torch.allclose(merged, expected)


def test_item_graph_encoder_equals_dense_propagation():
    x = np.random.default_rng(2).normal(size=(9, 4)).astype(np.float32)
    graph = knn_graph(x, k=3)
    hetero = build_heterograph(2, 9, np.array([[0, 0], [1, 3]]), {"knn_image": graph.as_relation()})
    assert hetero.num_edges((ITEM, "knn_image", ITEM)) == 27
    encoder = ItemGraphEncoder(hetero, "knn_image", n_layers=2)
    h = torch.randn(9, 5, requires_grad=True)
    a = graph.to_dense()
    assert not torch.allclose(a, a.t())  # top-k is not symmetric: the backward needs A^T
    out = encoder(h)
    assert torch.allclose(out, a @ (a @ h), atol=1e-5)
    upstream = torch.randn(9, 5)
    (grad,) = torch.autograd.grad(out, h, upstream)
    assert torch.allclose(grad, a.t() @ (a.t() @ upstream), atol=1e-5)


@pytest.mark.parametrize("self_loop", [True, False])
def test_the_bf16_candidate_search_finds_the_fp32_graph(self_loop):
    """bf16 products pick 2k + 8 candidates, fp32 ranks them: on clustered 256-d features (many
    close similarities) the graph is the plain fp32 search's, edge for edge and weight for weight."""
    rng = np.random.default_rng(3)
    centres = rng.normal(size=(12, 256))
    x = (centres[rng.integers(0, 12, 900)] + 0.7 * rng.normal(size=(900, 256))).astype(np.float32)
    plain = knn_graph(x, k=10, self_loop=self_loop, chunk_rows=128, search="fp32")
    fast = knn_graph(x, k=10, self_loop=self_loop, chunk_rows=128, search="bf16")
    order = lambda g: torch.argsort(g.dst * 900 + g.src)  # noqa: E731
    a, b = order(plain), order(fast)
    assert torch.equal(plain.dst[a], fast.dst[b]) and torch.equal(plain.src[a], fast.src[b])
    torch.testing.assert_close(fast.weight[b], plain.weight[a], rtol=1e-5, atol=1e-7)


def test_auto_search_keeps_fp32_for_small_catalogues():
    from dgl_synergraph.graphs.knn import BF16_SEARCH_MIN_ROWS, bf16_search_pays

    assert not bf16_search_pays(torch.zeros(BF16_SEARCH_MIN_ROWS - 1, 4))
    assert bf16_search_pays(torch.zeros(BF16_SEARCH_MIN_ROWS, 4)) == torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_the_bf16_search_is_taken_only_under_precision_bf16(tiny, tmp_path, monkeypatch):
    """Runs build exact fp32 kNN graphs; precision=bf16 opts into the candidate search too."""
    import dgl_synergraph.graphs.knn as knn
    from dgl_synergraph import build_config
    from dgl_synergraph.training.trainer import model_for

    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    monkeypatch.setattr(knn, "BF16_SEARCH_MIN_ROWS", 1)  # tiny's 80 items count as large
    modes = []
    plain = knn._cosine_top_k
    monkeypatch.setattr(knn, "_cosine_top_k", lambda *a, **kw: modes.append(kw["search"]) or plain(*a, **kw))
    for precision in ("fp32", "bf16"):
        model_for(build_config({"dataset": "tiny", "model": "mgcn", "knn_k": 5, "embedding_dim": 8,
                                "precision": precision}), tiny, torch.device("cpu"))
    assert modes == ["fp32", "fp32", "auto", "auto"]  # image and text, per run
    assert knn.bf16_search_pays(torch.zeros(3, 2)) == torch.ops.mkldnn._is_mkldnn_bf16_supported()


def test_excluding_self_from_a_search_over_another_query_is_refused():
    """Which catalogue row is a query row's "self" is known only when the query is the catalogue;
    with another query the flag used to be ignored without a word."""
    from dgl_synergraph.graphs.knn import _cosine_top_k
    catalogue = torch.nn.functional.normalize(torch.randn(12, 4), dim=1)
    with pytest.raises(ValueError, match="exclude_self"):
        _cosine_top_k(catalogue.clone(), catalogue, 3, chunk_rows=5, exclude_self=True)
    values, indices = _cosine_top_k(catalogue, catalogue, 3, chunk_rows=5, exclude_self=True)
    assert not (indices == torch.arange(12)[:, None]).any()
