"""Property tests (hypothesis) on small random datasets: no leakage between the splits, and the
sampler, evaluator and kNN graphs keep their promises on any input, not only on ``tiny``."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dgl_synergraph.data.dataset import Dataset
from dgl_synergraph.data.preprocess import PreprocessOptions, assign_split, k_core
from dgl_synergraph.evaluation.evaluator import RankingEvaluator
from dgl_synergraph.graphs.cooccurrence import cooccurrence_graph
from dgl_synergraph.graphs.hetero import INTERACTS
from dgl_synergraph.graphs.knn import knn_graph
from dgl_synergraph.models.registry import MODELS, resolve_model_params
from dgl_synergraph.training.sampler import NegativeSampler

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def interactions(draw, min_users=2, max_users=12, min_items=3, max_items=10):
    """Distinct (user, item) pairs; every user has at least one pair."""
    n_users = draw(st.integers(min_users, max_users))
    n_items = draw(st.integers(min_items, max_items))
    pairs = set()
    for user in range(n_users):
        items = draw(st.sets(st.integers(0, n_items - 1), min_size=1, max_size=n_items - 1))
        pairs |= {(user, item) for item in items}
    return n_users, n_items, np.array(sorted(pairs), dtype=np.int64)


@st.composite
def datasets(draw):
    """A random split of random interactions; every user keeps a training item and misses one."""
    n_users, n_items, pairs = draw(interactions())
    labels = np.array(draw(st.lists(st.integers(0, 2), min_size=len(pairs), max_size=len(pairs))))
    first = np.unique(pairs[:, 0], return_index=True)[1]
    labels[first] = 0
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    features = {"image": rng.normal(size=(n_items, 6)).astype(np.float32),
                "text": rng.normal(size=(n_items, 4)).astype(np.float32)}
    features["image"][rng.random(n_items) < 0.2] = 0  # zero-norm rows are allowed
    return Dataset("prop", n_users, n_items, pairs[labels == 0], pairs[labels == 1], pairs[labels == 2], features)


def _pair_set(array: np.ndarray) -> set[tuple[int, int]]:
    return {(int(u), int(i)) for u, i in array}


@SETTINGS
@given(interactions(), st.sampled_from(["random", "temporal", "leave-last-out"]), st.integers(1, 3), st.integers(0, 99))
def test_the_split_is_a_partition_of_the_kept_interactions(data, split, k, seed):
    _, _, pairs = data
    frame = pl.DataFrame({"user": pairs[:, 0].astype(str), "item": pairs[:, 1].astype(str),
                          "timestamp": np.arange(len(pairs))[::-1]})
    kept, _ = k_core(frame, k)
    if kept.height == 0:
        return  # the pipeline stops before splitting (the catalogue's "k-core removes everything")
    labelled = assign_split(kept, PreprocessOptions(k_core=k, split=split, seed=seed))
    assert labelled.height == kept.height  # every kept interaction gets exactly one label
    assert set(labelled["x_label"].unique().to_list()) <= {0, 1, 2}
    keys = lambda f: sorted(zip(f["user"].to_list(), f["item"].to_list()))  # noqa: E731
    assert keys(labelled) == keys(kept)
    per_user = labelled.group_by("user").agg(n=pl.len(), train=(pl.col("x_label") == 0).sum())
    assert (per_user["train"] >= 1).all()  # nobody is left without training data


@SETTINGS
@given(datasets(), st.integers(0, 2**16))
def test_the_negative_sampler_never_returns_a_training_positive(data, seed):
    per_user = np.bincount(data.train[:, 0], minlength=data.n_users)
    if per_user.max() >= len(np.unique(data.train[:, 1])):
        return  # no negative exists for that user; the sampler refuses (tested elsewhere)
    sampler = NegativeSampler(data.train, data.n_items, torch.Generator().manual_seed(seed))
    users = torch.as_tensor(np.repeat(data.train[:, 0], 20))
    negatives = sampler.sample(users)
    train = _pair_set(data.train)
    assert not any((int(u), int(i)) in train for u, i in zip(users, negatives))


def _brute_force(scores: np.ndarray, data: Dataset, split: str, k: int) -> dict[str, float]:
    """Recall and NDCG@k, one user at a time, straight from the definitions."""
    train, target = _pair_set(data.train), _pair_set(getattr(data, split))
    recalls, ndcgs = [], []
    for user in sorted({u for u, _ in target}):
        relevant = {i for u, i in target if u == user}
        candidates = [i for i in range(data.n_items) if (user, i) not in train]
        ranked = sorted(candidates, key=lambda i: -scores[user, i])[:k]
        hits = [1.0 if i in relevant else 0.0 for i in ranked]
        recalls.append(sum(hits) / len(relevant))
        dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
        ideal = sum(1 / np.log2(r + 2) for r in range(min(len(relevant), k)))
        ndcgs.append(dcg / ideal)
    return {f"recall@{k}": float(np.mean(recalls)), f"ndcg@{k}": float(np.mean(ndcgs))}


@SETTINGS
@given(datasets(), st.integers(1, 5), st.integers(0, 2**16), st.booleans())
def test_the_evaluator_equals_a_brute_force_reference_and_never_counts_training_items(data, k, seed, cheat):
    if len(data.test) == 0:
        return
    k = min(k, data.n_items)
    rng = np.random.default_rng(seed)
    scores = rng.random((data.n_users, data.n_items))  # distinct floats: no ties
    if cheat:  # a model that scores its training items highest must not be rewarded for them
        for u, i in data.train:
            scores[u, i] += 10
    evaluator = RankingEvaluator(data.csr("test"), [data.csr("train")], [k], batch_size=3)
    metrics = evaluator.evaluate(lambda users: torch.as_tensor(scores)[users].clone())
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    expected = _brute_force(scores, data, "test", k)
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key
    # training items are masked: they rank below every other item (only a list longer than the
    # user's unseen items reaches them)
    top = evaluator.top_items(lambda users: torch.as_tensor(scores)[users].clone(), evaluator.users)
    train = _pair_set(data.train)
    for user, row in zip(evaluator.users.tolist(), top.tolist()):
        unseen = data.n_items - sum(1 for u, _ in train if u == user)
        assert not any((user, item) in train for item in row[:unseen])


def _graphs_of(name: str, data: Dataset) -> dict:
    entry = MODELS[name]
    params = resolve_model_params(name, {"knn_k": 2} if "knn_k" in entry.hyperparameters else {})
    if "cooc_k" in params:
        params["cooc_k"] = 2
    recipe = entry.recipe()
    import inspect

    wanted = [p for p in inspect.signature(recipe).parameters if p not in ("dataset", "device")]
    graph = recipe(data, device=torch.device("cpu"), **{key: params[key] for key in wanted})["graph"]
    out = {}
    for etype in graph.canonical_etypes:
        src, dst = graph.edges(etype=etype)
        weight = graph.edges[etype].data.get("w")
        order = np.lexsort((dst.numpy(), src.numpy()))
        out[etype] = (src.numpy()[order], dst.numpy()[order], None if weight is None else weight.numpy()[order])
    return out


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), seed=st.integers(0, 2**16))
def test_no_valid_or_test_pair_reaches_a_graph_a_model_trains_on(tmp_path_factory, data, seed):
    """Every model's graphs (interaction relations, kNN, co-occurrence, infused) are the same
    whatever the valid and test splits hold: they are built from training pairs only."""
    import os

    os.environ["SYNERGRAPH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    rng = np.random.default_rng(seed)
    others = np.array([(u, i) for u in range(data.n_users) for i in range(data.n_items)
                       if (u, i) not in _pair_set(data.train) and rng.random() < 0.5], dtype=np.int64).reshape(-1, 2)
    moved = Dataset("prop", data.n_users, data.n_items, data.train, others[: len(others) // 2],
                    others[len(others) // 2:], data.features)
    for name in sorted({entry.graphs: name for name, entry in MODELS.items()}.values()):
        real, changed = _graphs_of(name, data), _graphs_of(name, moved)
        assert real.keys() == changed.keys()
        for etype in real:
            for a, b in zip(real[etype], changed[etype]):
                if a is None:
                    assert b is None
                else:
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} {etype}")
        src, dst, _ = real[("user", INTERACTS[1], "item")]
        assert set(zip(src.tolist(), dst.tolist())) == _pair_set(data.train)


@SETTINGS
@given(datasets(), st.integers(1, 12), st.sampled_from(["similarity", "binary"]), st.booleans())
def test_knn_graphs_have_no_nan_and_k_neighbours_per_item(data, k, weighting, self_loop):
    graph = knn_graph(data.features["image"], k, weighting, self_loop)
    expected = min(k, data.n_items if self_loop else data.n_items - 1)
    assert torch.isfinite(graph.weight).all()
    assert torch.bincount(graph.dst, minlength=data.n_items).tolist() == [expected] * data.n_items
    if not self_loop:
        assert not (graph.src == graph.dst).any()


@SETTINGS
@given(datasets(), st.integers(1, 6))
def test_the_cooccurrence_graph_links_only_items_sharing_a_training_user(data, k):
    graph = cooccurrence_graph(data.train, data.n_users, data.n_items, k)
    assert torch.isfinite(graph.weight).all()
    users_of = {}
    for u, i in data.train:
        users_of.setdefault(int(i), set()).add(int(u))
    for src, dst in zip(graph.src.tolist(), graph.dst.tolist()):
        assert src == dst or users_of.get(src, set()) & users_of.get(dst, set())
