"""Metric definitions against rankings worked out by hand."""

import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from dgl_synergraph.evaluation import RankingEvaluator, metric_sums


def test_single_user_hand_computed():
    # relevant items at ranks 1 and 3 of 5, two relevant items in total
    hits = torch.tensor([[True, False, True, False, False]])
    out = {k: float(v) for k, v in metric_sums(hits, torch.tensor([2]), [1, 3, 5]).items()}
    assert out["recall@1"] == pytest.approx(0.5)
    assert out["recall@3"] == pytest.approx(1.0)
    assert out["precision@3"] == pytest.approx(2 / 3)
    assert out["hit@1"] == 1.0
    idcg = 1 + 1 / math.log2(3)
    assert out["ndcg@3"] == pytest.approx((1 + 1 / math.log2(4)) / idcg)
    assert out["ndcg@1"] == pytest.approx(1.0)
    assert out["map@3"] == pytest.approx((1 + 2 / 3) / 2)
    assert out["map@1"] == pytest.approx(1.0)  # min(n_relevant, K) = 1


def test_idcg_uses_min_of_relevant_and_k():
    # 3 relevant items, K = 2, both top slots hit -> perfect NDCG and MAP at 2
    hits = torch.tensor([[True, True, False]])
    out = {k: float(v) for k, v in metric_sums(hits, torch.tensor([3]), [2]).items()}
    assert out["ndcg@2"] == pytest.approx(1.0)
    assert out["map@2"] == pytest.approx(1.0)
    assert out["recall@2"] == pytest.approx(2 / 3)


def test_miss_and_late_hit():
    hits = torch.tensor([[False, False, False, True, False]])
    out = {k: float(v) for k, v in metric_sums(hits, torch.tensor([1]), [3, 5]).items()}
    assert out["recall@3"] == 0 and out["ndcg@3"] == 0 and out["hit@3"] == 0 and out["map@3"] == 0
    assert out["recall@5"] == 1.0
    assert out["ndcg@5"] == pytest.approx(1 / math.log2(5))
    assert out["map@5"] == pytest.approx(0.25)
    assert out["precision@5"] == pytest.approx(0.2)


def _csr(rows, n_users, n_items):
    r = [u for u, items in rows.items() for _ in items]
    c = [i for items in rows.values() for i in items]
    return sp.csr_matrix((np.ones(len(r), dtype=np.float32), (r, c)), shape=(n_users, n_items))


def test_evaluator_masks_training_items_and_averages_over_users():
    n_items = 6
    scores = torch.tensor([
        [0.9, 0.1, 0.8, 0.7, 0.2, 0.0],   # user 0: train item 0 masked -> ranking 2, 3, 4, 1, 5
        [0.0, 0.5, 0.4, 0.3, 0.2, 0.1],   # user 1: no train mask -> ranking 1, 2, 3, 4, 5, 0
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],   # user 2: no held-out items -> not evaluated
    ])
    target = _csr({0: [3, 1], 1: [0]}, 3, n_items)
    train = _csr({0: [0], 2: [1]}, 3, n_items)
    evaluator = RankingEvaluator(target, [train], ks=[2, 6], batch_size=1)
    got = evaluator.evaluate(lambda users: scores[users])
    assert evaluator.n_users == 2
    # user 0: hits at ranks 2 and 4 (of 5 unmasked); user 1: hit at rank 6
    assert got["recall@2"] == pytest.approx((0.5 + 0.0) / 2)
    assert got["recall@6"] == pytest.approx((1.0 + 1.0) / 2)
    ndcg0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    ndcg1 = 1 / math.log2(7)
    assert got["ndcg@6"] == pytest.approx((ndcg0 + ndcg1) / 2)
    assert got["hit@2"] == pytest.approx(0.5)
    # a masked item is never recommended even though it scores highest
    top = evaluator.top_items(lambda users: scores[users], torch.tensor([0]))
    assert 0 not in top[0, :5].tolist()


def test_evaluator_batching_does_not_change_results():
    rng = np.random.default_rng(0)
    n_users, n_items = 50, 30
    scores = torch.tensor(rng.normal(size=(n_users, n_items)), dtype=torch.float32)
    target = sp.csr_matrix((rng.random((n_users, n_items)) < 0.1).astype(np.float32))
    train = sp.csr_matrix((rng.random((n_users, n_items)) < 0.2).astype(np.float32))
    train = train - train.multiply(target)
    train.eliminate_zeros()
    a = RankingEvaluator(target, [train], ks=[5, 10], batch_size=7).evaluate(lambda u: scores[u])
    b = RankingEvaluator(target, [train], ks=[5, 10], batch_size=1000).evaluate(lambda u: scores[u])
    assert a == pytest.approx(b)
    from dgl_synergraph.evaluation import evaluator as evaluator_module

    scored = []
    with pytest.MonkeyPatch.context() as patch:  # score blocks of 2 users (60 scores) inside each batch
        patch.setattr(evaluator_module, "SCORE_BLOCK", 2 * n_items + 1)
        c = RankingEvaluator(target, [train], ks=[5, 10], batch_size=1000).evaluate(
            lambda u: scored.append(len(u)) or scores[u])
    assert max(scored) == 2 and c == pytest.approx(b)
    # brute force recall@5 per user with numpy
    s = scores.numpy().copy()
    s[train.toarray() > 0] = -np.inf
    t = target.toarray() > 0
    users = np.flatnonzero(t.sum(1))
    top = np.argsort(-s, axis=1, kind="stable")[:, :5]
    recall = [t[u, top[u]].sum() / t[u].sum() for u in users]
    assert a["recall@5"] == pytest.approx(np.mean(recall))
