"""The torch propagation backend against DGL's: same embeddings, losses and gradients on a tiny
graph, and the same metrics for a short run on ``sample``.

Tolerance: the two sum the same products in a different order (DGL scales node features around
an unweighted sum; torch multiplies by the folded edge weights), so results agree to float32
rounding: 1e-5 relative, 1e-6 absolute on embeddings and gradients.
"""

import json

import pytest
import torch

from dgl_synergraph import build_config
from dgl_synergraph.models.registry import MODELS
from dgl_synergraph.nn.propagation import HeteroPropagation, backend_of, resolve_backend, set_backend
from dgl_synergraph.training import train
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.training.trainer import model_for


def _pair(tiny, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    settings = {"dataset": "tiny", "model": name, "embedding_dim": 8}
    if "knn_k" in MODELS[name].hyperparameters:
        settings["knn_k"] = 5
    models = [model_for(build_config(settings | {"backend": b}), tiny, torch.device("cpu")) for b in ("dgl", "torch")]
    assert [backend_of(m) for m in models] == ["dgl", "torch"]
    return models


@pytest.mark.parametrize("name", ["lightgcn", "mgcn", "synergraph", "siger", "freedom"])
def test_both_backends_give_the_same_embeddings_losses_and_gradients(tiny, tmp_path, monkeypatch, name):
    dgl_model, torch_model = _pair(tiny, tmp_path, monkeypatch, name)
    users, positives, negatives = next(iter(BPRBatches(tiny.train, tiny.n_items,
                                                        torch.Generator().manual_seed(0)).epoch(64)))
    results = []
    for model in (dgl_model, torch_model):
        torch.manual_seed(1)  # SIGER's perturbation noise and FREEDOM's pruning draw the same
        model.on_epoch_start()
        torch.manual_seed(2)
        terms = model.loss(users, positives, negatives)
        model.zero_grad()
        sum(terms.values()).backward()
        with torch.no_grad():
            embeddings = model.eval().embeddings()
        model.train()
        results.append((terms, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
                        embeddings))
    (terms_a, grads_a, emb_a), (terms_b, grads_b, emb_b) = results
    assert {k: float(v) for k, v in terms_b.items()} == pytest.approx({k: float(v) for k, v in terms_a.items()}, rel=1e-5)
    assert grads_a.keys() == grads_b.keys() and grads_a
    for key in grads_a:
        torch.testing.assert_close(grads_b[key], grads_a[key], rtol=1e-5, atol=1e-6, msg=key)
    for a, b in zip(emb_a, emb_b):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_torch_backend_runs_without_dgl_graphs(tiny, tmp_path, monkeypatch):
    """Every interaction relation of the torch backend is a torch CSR product, not a DGL call."""
    _, torch_model = _pair(tiny, tmp_path, monkeypatch, "mgcn")
    steps = [m for m in torch_model.modules() if isinstance(m, HeteroPropagation)]
    assert steps and all(m.backend == "torch" for m in steps)
    import dgl.ops

    monkeypatch.setattr(dgl.ops, "copy_u_sum", lambda *a, **k: pytest.fail("DGL propagation called"))
    torch_model.embeddings()
    set_backend(torch_model, "dgl")
    with pytest.raises(pytest.fail.Exception):
        torch_model.embeddings()


def test_auto_picks_dgl_on_the_cpu():
    assert resolve_backend("auto", torch.device("cpu")) == "dgl"
    assert resolve_backend("torch", torch.device("cpu")) == "torch"


def test_a_short_sample_run_has_the_same_metrics_on_both_backends(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    metrics = {}
    for backend in ("dgl", "torch"):
        config = build_config({"dataset": "sample", "model": "lightgcn", "epochs": 3, "backend": backend,
                               "embedding_dim": 16})
        train(config, out=tmp_path / backend, progress=False)
        metrics[backend] = json.loads((tmp_path / backend / "metrics.json").read_text())
        assert json.loads((tmp_path / backend / "config.json").read_text())["config"]["backend"] == backend
    for split in ("valid", "test"):
        assert metrics["torch"][split] == pytest.approx(metrics["dgl"][split], rel=1e-4, abs=1e-6)
    assert metrics["torch"]["best_epoch"] == metrics["dgl"]["best_epoch"]
