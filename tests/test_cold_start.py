"""Items that were not in training, scored from their content alone.

The models' rule is checked against their own forward pass: an item of the catalogue, given its
own row of the trained item-item graph as its "content neighbours", must get exactly the item-side
view the model computes for it, plus the behaviour view imputed from those neighbours.
"""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cli.main import app
from dgl_synergraph import build_config, load_run
from dgl_synergraph.errors import DataError
from dgl_synergraph.graphs.knn import cached_knn_graph, content_neighbours
from dgl_synergraph.graphs.recipes import knn_relation, semantic_relation
from dgl_synergraph.training import train
from dgl_synergraph.training.trainer import model_for

ITEMS = torch.tensor([0, 5, 17, 42])


def _imputed(rows, neighbours, shares):
    """Reference: the weighted mean direction of the neighbours' rows, at their weighted mean length."""
    out = []
    for item in range(len(ITEMS)):
        pairs = [(share * w, rows[j]) for m, share in shares.items() for j, w in zip(*[t[item] for t in neighbours[m]])]
        mean = sum(w * r for w, r in pairs)
        out.append(mean / mean.norm() * sum(w * r.norm() for w, r in pairs))
    return torch.stack(out)


def _model(tiny, tmp_path, monkeypatch, name, **settings):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    config = build_config({"dataset": "tiny", "model": name, "knn_k": 5, "embedding_dim": 8} | settings)
    model = model_for(config, tiny, torch.device("cpu")).eval()
    with torch.no_grad():  # trained-looking, not initial, parameters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def _rows(csr: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The graph rows of ``items`` as (index, weight) of equal length (every row has K entries)."""
    crow, col, val = csr.crow_indices(), csr.col_indices(), csr.values()
    index = torch.stack([col[crow[i]:crow[i + 1]] for i in items])
    weight = torch.stack([val[crow[i]:crow[i + 1]] for i in items])
    return index, weight


@pytest.mark.parametrize("name", ["mgcn", "synergraph"])
def test_mgcn_rule_is_its_own_item_side_view(tiny, tmp_path, monkeypatch, name):
    model = _model(tiny, tmp_path, monkeypatch, name)
    neighbours = {m: _rows(model.ii_encoders[m].step.weighted[("item", knn_relation(m), "item")].matrix, ITEMS)
                  for m in model.modalities}
    with torch.no_grad():
        views = model.views()
        behaviour = _imputed(views.content_item, neighbours, {m: 0.5 for m in model.modalities})
        expected = behaviour + model.fuser({m: views.modal_item[m][ITEMS] for m in model.modalities}, behaviour)
        got = model.cold_item_embeddings(neighbours)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_freedom_rule_is_its_own_mixed_graph_step(tiny, tmp_path, monkeypatch):
    model = _model(tiny, tmp_path, monkeypatch, "freedom")
    neighbours = {}
    for m in model.mixing:  # the per-modality graphs the mixed one is made of
        graph = cached_knn_graph(tiny.features[m], 5, "binary", True)
        order = torch.argsort(graph.dst * tiny.n_items + graph.src)
        src, dst, weight = graph.src[order], graph.dst[order], graph.weight[order]
        index = torch.stack([src[dst == i] for i in ITEMS])
        neighbours[m] = (index, torch.stack([weight[dst == i] for i in ITEMS]))
    with torch.no_grad():
        _, ui_items = model.ui_encoder(model.user_embedding, model.item_embedding)
        behaviour = _imputed(ui_items, neighbours, model.mixing)
        expected = behaviour + model.mm_encoder(model.item_embedding)[ITEMS]
        got = model.cold_item_embeddings(neighbours)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_siger_rule_is_its_own_semantic_view(tiny, tmp_path, monkeypatch):
    model = _model(tiny, tmp_path, monkeypatch, "siger", beta=0.0)  # no co-occurrence part: a new item has none
    neighbours = {m: _rows(model.sem_steps[m].step.weighted[("item", semantic_relation(m), "item")].matrix, ITEMS)
                  for m in model.modalities}
    with torch.no_grad():
        items, _ = model.semantic(model.project())
        _, b_item = model.ui_encoder(model.user_embedding, model.item_embedding)
        behaviour = _imputed(b_item, neighbours, {m: 0.5 for m in model.modalities})
        expected = behaviour + model._fuse({m: items[m][ITEMS] for m in model.modalities})
        got = model.cold_item_embeddings(neighbours)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_content_neighbours_are_the_top_k_by_cosine_with_rows_summing_to_one():
    rng = np.random.default_rng(0)
    catalogue, query = rng.normal(size=(30, 6)), rng.normal(size=(4, 6))
    index, weight = content_neighbours(query, catalogue, 5, "similarity", chunk_rows=3)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    similarity = unit(query) @ unit(catalogue).T
    np.testing.assert_array_equal(index.numpy(), np.argsort(-similarity, axis=1)[:, :5])
    clamped = np.clip(np.take_along_axis(similarity, index.numpy(), 1), 0, None)
    np.testing.assert_allclose(weight.numpy(), clamped / clamped.sum(1, keepdims=True), rtol=1e-5)
    _, binary = content_neighbours(query, catalogue, 5, "binary")
    assert torch.allclose(binary, torch.full((4, 5), 0.2))


@pytest.fixture(scope="module")
def mgcn_run(tiny_dir, tiny, tmp_path_factory):
    out = tmp_path_factory.mktemp("cold") / "mgcn"
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": "mgcn", "embedding_dim": 16,
                           "epochs": 15, "lr": 0.01, "knn_k": 5, "finetune_features": False})
    train(config, out=out, dataset=tiny, progress=False)
    return out


def test_a_copy_of_an_item_is_scored_like_it(mgcn_run, tiny):
    """Known behaviour on clustered data: a new item whose content copies a catalogue item's is
    ranked by users much as that item is (its neighbours are the original's)."""
    run = load_run(mgcn_run)
    originals = [3, 30, 61]
    added = run.add_items({m: f[originals] for m, f in tiny.features.items()})
    assert added == [80, 81, 82] and run.n_items == 83
    scores = run.score(list(range(tiny.n_users)), originals + added, ids="internal")
    for column in range(3):
        correlation = np.corrcoef(scores[:, column], scores[:, 3 + column])[0, 1]
        assert correlation > 0.5, (originals[column], correlation)
    top = run.recommend(list(range(tiny.n_users)), k=tiny.n_items + 3, ids="internal", exclude_seen=False)
    assert all(set(added) <= set(rec.items) for rec in top)  # recommendable like any item
    assert run.similar_items(80, k=1, ids="internal").items == [3]
    assert run.evaluate("test", [10]) == load_run(mgcn_run).evaluate("test", [10])  # evaluation ignores them


def test_add_items_rejects_what_it_cannot_use(mgcn_run, tiny, tiny_dir, tmp_path):
    run = load_run(mgcn_run)
    image, text = tiny.features["image"][:2], tiny.features["text"][:2]
    with pytest.raises(DataError, match="no 'text' features"):
        run.add_items({"image": image})
    with pytest.raises(DataError, match=r"image features must be \[n, "):
        run.add_items({"image": image[:, :3], "text": text})
    with pytest.raises(DataError, match="NaN"):
        run.add_items({"image": image * np.nan, "text": text})
    with pytest.raises(DataError, match="same, non-zero number of rows"):
        run.add_items({"image": image, "text": text[:1]})
    with pytest.raises(DataError, match="no raw item ids"):
        run.add_items({"image": image, "text": text}, ids=["a", "b"])
    lightgcn = tmp_path / "lgcn"
    train(build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "embedding_dim": 8, "epochs": 1}),
          out=lightgcn, dataset=tiny, progress=False)
    with pytest.raises(DataError, match="ID embeddings only"):
        load_run(lightgcn).add_items({"image": image, "text": text})


def test_recommend_new_items_folder(mgcn_run, tiny, tmp_path):
    folder = tmp_path / "new"
    folder.mkdir()
    for m, f in tiny.features.items():
        np.save(folder / f"{m}_feat.npy", f[[3, 30]])
    result = CliRunner().invoke(app, ["recommend", "--run", str(mgcn_run), "--user", "0", "--k", "82",
                                      "--new-items", str(folder), "--include-seen", "--json"])
    assert result.exit_code == 0, result.output
    assert "added 2 new items" in result.output and '80' in result.output.splitlines()[-1]
    np.save(folder / "image_feat.npy", tiny.features["image"][[3]])  # 1 row where text has 2
    bad = CliRunner().invoke(app, ["recommend", "--run", str(mgcn_run), "--user", "0", "--new-items", str(folder)])
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert bad.exit_code != 0 and len(lines) == 1 and "text_feat.npy: has 2 rows but image_feat.npy has 1" in lines[0]


def test_the_cold_start_protocol_holds_items_out_entirely(tiny, tmp_path, monkeypatch):
    from dgl_synergraph.evaluation.cold_start import hold_out_items, run_protocol

    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    warm, held = hold_out_items(tiny, 0.1, 999)
    assert len(held) == 8 and not set(warm) & set(held) and len(warm) + len(held) == tiny.n_items
    summary = run_protocol(tiny, "mgcn", tmp_path / "cold", settings={"epochs": 3, "knn_k": 5, "embedding_dim": 8},
                           progress=False)
    warm_inter = (tmp_path / "cold" / "data" / "tiny-warm" / "tiny-warm.inter").read_text().splitlines()
    assert len(warm_inter) - 1 == sum(int(i not in set(held)) for pairs in (tiny.train, tiny.valid, tiny.test)
                                      for i in pairs[:, 1])
    buyers = {int(u) for pairs in (tiny.train, tiny.valid, tiny.test) for u, i in pairs if i in set(held)}
    assert 0 < summary["users"] <= len(buyers)
    assert set(summary["cold"]) == {"mgcn", "content kNN", "random"}
    assert all(0 <= value <= 1 for scores in summary["cold"].values() for value in scores.values())
    assert (tmp_path / "cold" / "cold_start.json").is_file()
