"""SIGER: collaborative graph, infusion, perturbation, dual alignment, ablation switches."""

import numpy as np
import pytest
import torch

from dgl_synergraph import build_config
from dgl_synergraph.data import Dataset
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.graphs.cooccurrence import cooccurrence_graph
from dgl_synergraph.graphs.knn import cached_knn_graph
from dgl_synergraph.losses import anchor_info_nce
from dgl_synergraph.models import build_model
from dgl_synergraph.nn.multimodal import modulus_perturbation
from dgl_synergraph.training import train
from dgl_synergraph.training.trainer import model_for


def dense_cooccurrence(pairs, n_users, n_items, k, cosine):
    r = np.zeros((n_users, n_items))
    r[pairs[:, 0], pairs[:, 1]] = 1
    c = r.T @ r
    np.fill_diagonal(c, 0)
    if cosine:
        deg = r.sum(0)
        inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0)
        c = c * inv[:, None] * inv[None, :]
    adj = np.zeros_like(c)
    for i in range(n_items):
        nz = [j for j in range(n_items) if c[i, j] > 0]
        for j in sorted(nz, key=lambda j: (-c[i, j], j))[:k]:  # ties: lower item id first
            adj[i, j] = c[i, j]
    deg = adj.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1e-12)), 0)
    return inv[:, None] * adj * inv[None, :]


@pytest.mark.parametrize("cosine", [True, False])
def test_cooccurrence_graph_equals_dense_reference(tiny, cosine):
    got = cooccurrence_graph(tiny.train, tiny.n_users, tiny.n_items, k=4, cosine=cosine, block_items=7).to_dense().numpy()
    expected = dense_cooccurrence(tiny.train, tiny.n_users, tiny.n_items, 4, cosine)
    assert ((got != 0) == (expected != 0)).all()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_siger_collaborative_graph_ignores_valid_and_test_interactions(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    # items 3 and 4 are co-interacted ONLY through user 2's test and valid interactions
    train = np.array([[0, 0], [0, 1], [1, 1], [1, 2], [2, 3], [3, 4], [3, 0]])
    data = Dataset(name="planted", n_users=4, n_items=5, train=train, valid=np.array([[1, 3]]),
                   test=np.array([[2, 4]]), features={"image": np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)})
    config = build_config({"dataset": "planted", "model": "siger", "embedding_dim": 4, "knn_k": 1, "cooc_k": 4, "beta": 1.0})
    model = model_for(config, data, torch.device("cpu"))
    dense = _relation_dense(model, "image", 5)  # beta = 1: only the collaborative graph
    assert dense[3, 4] == 0 and dense[4, 3] == 0 and dense[1, 3] == 0
    assert dense[0, 1] > 0 and dense[1, 0] > 0  # a training co-occurrence is an edge


def test_modulus_perturbation_norm_ratio_is_eps():
    torch.manual_seed(0)
    z = torch.randn(500, 16) * torch.rand(500, 1) * 10
    for eps in (0.05, 0.1, 0.2):
        noise = modulus_perturbation(z, eps) - z
        ratio = noise.norm(dim=1) / z.norm(dim=1)
        assert torch.allclose(ratio, torch.full_like(ratio, eps), atol=1e-5)
        assert ((torch.sign(noise) == torch.sign(z)) | (noise == 0)).all()  # same orthant
    inverse = modulus_perturbation(z, 0.1, inverse=True) - z
    assert torch.allclose(inverse.norm(dim=1), torch.full((500,), 0.1 * float(z.norm(dim=1).mean())), atol=1e-4)


@pytest.mark.parametrize("multi_positive", [False, True])
def test_anchor_loss_gives_no_gradient_to_the_anchor(multi_positive):
    anchor = torch.randn(6, 4, requires_grad=True)
    views = [torch.randn(6, 4, requires_grad=True) for _ in range(2)]
    anchor_info_nce(anchor, views, 0.2, multi_positive).backward()
    assert anchor.grad is None or anchor.grad.abs().sum() == 0
    assert all(v.grad.abs().sum() > 0 for v in views)


def test_anchor_multi_positive_hand_value():
    # one anchor row aligned with both views' row 0; two rows per view
    anchor = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    view = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    t = 1.0
    import math
    row0 = -math.log((2 * math.e) / (2 * math.e + 2 * 1.0))
    got = anchor_info_nce(anchor, [view, view], t, multi_positive=True)
    assert float(got) == pytest.approx(row0, abs=1e-6)  # both rows are symmetric


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))


def _siger(tiny, **settings):
    config = build_config({"dataset": "tiny", "model": "siger", "embedding_dim": 8, "knn_k": 5, "cooc_k": 5, **settings})
    return model_for(config, tiny, torch.device("cpu"))


def _batch(tiny):
    return (torch.as_tensor(tiny.train[:64, 0]), torch.as_tensor(tiny.train[:64, 1]),
            torch.as_tensor((tiny.train[:64, 1] + 1) % tiny.n_items))


def _relation_dense(model, m, n):
    step = model.sem_steps[m].step
    rel = ("item", f"semantic_{m}", "item")
    return step.weighted[rel].matrix.to_dense()


def test_siger_ablation_switches(tiny, cache):
    full = _siger(tiny)
    assert set(full.loss(*_batch(tiny))) == {"bpr", "reg", "perturb_cl", "anchor", "align"}
    assert set(_siger(tiny, cl_weight=0.0).loss(*_batch(tiny))) == {"bpr", "reg", "anchor", "align"}
    assert set(_siger(tiny, anchor_weight=0.0).loss(*_batch(tiny))) == {"bpr", "reg", "perturb_cl", "align"}
    assert set(_siger(tiny, align_weight=0.0).loss(*_batch(tiny))) == {"bpr", "reg", "perturb_cl", "anchor"}
    assert set(_siger(tiny, anchor_weight=0.0, align_weight=0.0).loss(*_batch(tiny))) == {"bpr", "reg", "perturb_cl"}
    # beta = 0: the semantic graph is the plain modality kNN graph; beta = 1: the collaborative one
    no_infusion = _relation_dense(_siger(tiny, beta=0.0), "image", tiny.n_items)
    knn = cached_knn_graph(tiny.features["image"], 5).to_dense()
    assert torch.allclose(no_infusion, knn, atol=1e-6)
    collab = cooccurrence_graph(tiny.train, tiny.n_users, tiny.n_items, 5).to_dense()
    assert torch.allclose(_relation_dense(_siger(tiny, beta=1.0), "image", tiny.n_items), collab, atol=1e-6)
    half = _relation_dense(_siger(tiny, beta=0.5), "image", tiny.n_items)
    assert torch.allclose(half, 0.5 * knn + 0.5 * collab, atol=1e-6)
    # scoring never perturbs: two calls give the same scores
    u1, _ = full.embeddings()
    u2, _ = full.embeddings()
    assert torch.equal(u1, u2)


def test_siger_learns_on_tiny(tiny_dir, tiny, tmp_path, cache):
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": "siger", "knn_k": 5, "cooc_k": 5,
                           "embedding_dim": 16, "batch_size": 256, "lr": 0.01, "epochs": 20, "patience": 50})
    run = train(config, out=tmp_path / "siger", dataset=tiny, progress=False)
    assert run.history[-1]["loss"] < run.history[0]["loss"]
    popular = build_model("mostpop", tiny, {}, "cpu").scorer()
    mostpop_valid = split_evaluator(tiny, "valid", [20], 4096, "cpu").evaluate(popular)["recall@20"]
    assert run.metrics["valid"]["recall@20"] > mostpop_valid + 0.05


def test_siger_semantic_input_switch(tiny, cache):
    purified = _siger(tiny)  # default: item ID embeddings gated by the projected features
    linear = _siger(tiny, semantic_input="linear")
    assert any(name.startswith("purifiers.") for name, _ in purified.named_parameters())
    assert not any(name.startswith("purifiers.") for name, _ in linear.named_parameters())
    # the purified input carries gradient to the item ID table through the semantic branch
    items = purified.project()[purified.modalities[0]]
    items.sum().backward()
    assert purified.item_embedding.grad is not None and purified.item_embedding.grad.abs().sum() > 0
    assert set(purified.training_diagnostics()) == {f"gate_{m}_{s}" for m in purified.modalities for s in ("mean", "std", "saturated", "logit_std")}
    with pytest.raises(ConfigError, match="semantic_input"):
        _siger(tiny, semantic_input="attention")


def test_siger_user_terms_at_the_batch_users_equal_the_whole_table_code(tiny, cache, monkeypatch):
    """The step takes every item-to-user sum at the batch's distinct users only; the plain code
    takes it for every user and indexes the batch afterwards: the same loss terms and gradients."""
    model = _siger(tiny, anchor_weight=0.01, align_weight=0.01)  # every user-side term on
    users, positives, negatives = _batch(tiny)
    assert len(torch.unique(users)) < len(users)
    encoder = model.ui_encoder
    every_user = type(encoder).items_to_users.__get__(encoder)
    results = []
    for restricted in (True, False):
        if not restricted:
            monkeypatch.setattr(encoder, "items_to_users",
                                lambda h, rows=None: every_user(h) if rows is None else every_user(h)[rows])
        torch.manual_seed(0)  # the same perturbation noise
        terms = model.loss(users, positives, negatives)
        model.zero_grad()
        sum(terms.values()).backward()
        results.append(({k: float(v) for k, v in terms.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fast_terms, fast_grads), (plain_terms, plain_grads) = results
    assert set(fast_terms) == {"bpr", "reg", "perturb_cl", "anchor", "align"}
    assert fast_terms == pytest.approx(plain_terms, rel=1e-5)
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-7, msg=name)
