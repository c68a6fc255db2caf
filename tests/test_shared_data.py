"""Real benchmark data from ../shared/data (real interactions, derived features).

Skipped when the folder is absent. The MostPop figures are an independent computation on this
exact split, so they check the loader and the evaluator together.
"""

import pytest

from dgl_synergraph.data import load_dataset
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.models import build_model

from conftest import shared_dataset_dir

import torch

EXPECTED = {
    # name: users, items, train, valid, test, image width, text width (shared/data/README.md)
    "baby": (19445, 7050, 119674, 20559, 20559, 4096, 384),
    "sports": (35598, 18357, 218409, 40029, 37899, 256, 384),
    "clothing": (39387, 23033, 197338, 41189, 40150, 256, 384),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_dataset_loads_with_documented_counts(name):
    data = load_dataset(path=shared_dataset_dir(name))
    users, items, n_train, n_valid, n_test, image_dim, text_dim = EXPECTED[name]
    assert (data.n_users, data.n_items, len(data.train)) == (users, items, n_train)
    assert len(data.valid) + len(data.test) <= n_valid + n_test
    assert sum(data.dropped_cold_users.values()) == 0 or len(data.valid) < n_valid
    assert data.features["image"].shape == (items, image_dim)
    assert data.features["text"].shape == (items, text_dim)


def test_mostpop_on_baby_matches_independent_computation():
    data = load_dataset(path=shared_dataset_dir("baby"), modalities=[])
    model = build_model("mostpop", data, {}, "cpu")
    score = model.scorer()
    test = split_evaluator(data, "test", [20], 4096, "cpu").evaluate(score)
    valid = split_evaluator(data, "valid", [20], 4096, "cpu").evaluate(score)
    assert test["recall@20"] == pytest.approx(0.0523, abs=5e-4)
    assert test["ndcg@20"] == pytest.approx(0.0219, abs=5e-4)
    assert valid["recall@20"] == pytest.approx(0.0475, abs=5e-4)


def test_recommend_on_a_trained_baby_run(tmp_path):
    from dgl_synergraph.api import load_run
    from dgl_synergraph import build_config
    from dgl_synergraph.training import train

    folder = shared_dataset_dir("baby")
    config = build_config({"dataset": "baby", "data_dir": str(folder.parent), "model": "bpr", "epochs": 1})
    train(config, out=tmp_path / "bpr", progress=False)
    run = load_run(tmp_path / "bpr")
    users = list(range(0, run.dataset.n_users, 40))  # ~490 users
    recs = run.recommend(users, k=20, ids="internal")
    train_csr = run.dataset.csr("train")
    evaluator = split_evaluator(run.dataset, "test", [20], 4096, "cpu")
    top = evaluator.top_items(run.model.scorer(), torch.as_tensor(users))[:, :20].tolist()
    for rec, expected in zip(recs, top):
        assert len(set(rec.items)) == 20
        assert not set(rec.items) & set(train_csr[rec.user].indices.tolist())
        assert rec.items == expected
    asins = run.recommend([0], k=3)[0].items  # raw ids: Baby ships i_id_mapping.csv
    assert all(isinstance(a, str) and len(a) == 10 for a in asins)
