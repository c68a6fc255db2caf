"""The torch propagation backend against DGL's: same embeddings, losses and gradients on a tiny
graph, and the same metrics for a short run on ``sample``.

Tolerance: the two sum the same products in a different order (DGL scales node features around
an unweighted sum; torch multiplies by the folded edge weights), so results agree to float32
rounding: 1e-5 relative, 1e-6 absolute on embeddings and gradients.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dgl_synergraph import build_config
from dgl_synergraph.graphs.hetero import EdgeListHeterograph, build_heterograph, import_dgl
from dgl_synergraph.models.registry import MODELS
from dgl_synergraph.nn.propagation import HeteroPropagation, backend_of, resolve_backend, set_backend
from dgl_synergraph.training import train
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.training.trainer import model_for
from conftest import child_env

ROOT = Path(__file__).resolve().parents[1]
needs_dgl = pytest.mark.skipif(import_dgl() is None, reason="compares against DGL, which cannot be imported here")


def _pair(tiny, tmp_path, monkeypatch, name):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    settings = {"dataset": "tiny", "model": name, "embedding_dim": 8}
    if "knn_k" in MODELS[name].hyperparameters:
        settings["knn_k"] = 5
    models = [model_for(build_config(settings | {"backend": b}), tiny, torch.device("cpu")) for b in ("dgl", "torch")]
    assert [backend_of(m) for m in models] == ["dgl", "torch"]
    return models


@needs_dgl
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


@needs_dgl
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


@needs_dgl
def test_auto_picks_the_torch_backend_and_dgl_stays_available():
    assert resolve_backend("auto") == "torch"
    assert resolve_backend("torch") == "torch"
    assert resolve_backend("dgl") == "dgl"


@needs_dgl
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


def _cli_without_dgl(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter where 'import dgl' fails, as on a machine without DGL."""
    code = "import sys; sys.modules['dgl'] = None; from cli.main import main; main(sys.argv[1:])"
    env = child_env()
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_edge_list_graph_reads_as_the_dgl_heterograph_does(tiny):
    pairs = tiny.train
    relation = (torch.tensor([0, 1, 1, 2]), torch.tensor([1, 0, 2, 2]), torch.tensor([0.5, 0.25, 1.0, 2.0]))
    dgl = import_dgl()
    graphs = [build_heterograph(tiny.n_users, tiny.n_items, pairs, {"knn_x": relation})]
    if dgl is not None:  # graphs[0] is DGL's; read the same edges through the edge-list graph too
        graphs.append(EdgeListHeterograph({r: graphs[0].edges(etype=r) for r in graphs[0].canonical_etypes},
                                          {t: graphs[0].num_nodes(t) for t in graphs[0].ntypes}))
    for graph in graphs:
        assert graph.num_nodes("user") == tiny.n_users and graph.num_nodes("item") == tiny.n_items
        users, items = graph.edges(etype=("user", "interacts", "item"))
        assert torch.equal(users, torch.as_tensor(pairs[:, 0])) and torch.equal(items, torch.as_tensor(pairs[:, 1]))
        assert torch.equal(graph.in_degrees(etype="interacts"), torch.bincount(items, minlength=tiny.n_items))
        assert torch.equal(graph.out_degrees(etype="interacted_by"), torch.bincount(items, minlength=tiny.n_items))
        assert graph.num_edges(("item", "knn_x", "item")) == 4
    built = graphs[0]
    if isinstance(built, EdgeListHeterograph):
        assert torch.equal(built.edges["knn_x"].data["w"], relation[2])
        with pytest.raises(KeyError, match="knn_y"):
            built.edges(etype="knn_y")


def test_without_dgl_a_run_trains_on_the_torch_backend_with_the_same_metrics(tmp_path, monkeypatch):
    """What a CUDA torch without a DGL build meets: 'auto' becomes the torch backend, and the run's
    metrics equal a torch-backend run where DGL is installed (the same CSR products, bit for bit)."""
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    # fp32: the comparison is of backends, bit for bit (oneDNN's bf16 kernels may differ with the
    # process's thread setup, and MGCN defaults to bf16 where the CPU has it)
    settings = ["--dataset", "sample", "--model", "mgcn", "--epochs", "2", "--set", "embedding_dim=16",
                "--set", "knn_k=5", "--precision", "fp32", "--quiet"]
    done = _cli_without_dgl("train", *settings, "--out", str(tmp_path / "no-dgl"))
    assert done.returncode == 0, done.stderr
    saved = json.loads((tmp_path / "no-dgl" / "config.json").read_text())
    assert saved["config"]["backend"] == "auto"
    assert saved["versions"]["dgl"] == "not installed"
    assert "(torch propagation)" in (tmp_path / "no-dgl" / "train.log").read_text()
    no_dgl = json.loads((tmp_path / "no-dgl" / "metrics.json").read_text())
    if import_dgl() is None:
        return  # nothing installed to compare against
    config = build_config({"dataset": "sample", "model": "mgcn", "epochs": 2, "embedding_dim": 16, "knn_k": 5,
                           "backend": "torch", "precision": "fp32"})
    train(config, out=tmp_path / "torch", progress=False)
    with_dgl = json.loads((tmp_path / "torch" / "metrics.json").read_text())
    assert {s: no_dgl[s] for s in ("valid", "test", "best_epoch")} == {s: with_dgl[s] for s in ("valid", "test", "best_epoch")}


def test_asking_for_the_dgl_backend_without_dgl_is_one_clear_error(tmp_path):
    done = _cli_without_dgl("train", "--dataset", "sample", "--epochs", "1", "--backend", "dgl",
                            "--out", str(tmp_path / "run"))
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "backend" in errors[0] and "DGL" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize("name", ["lightgcn", "mgcn", "synergraph"])
def test_on_cuda_the_torch_backend_gives_the_cpu_losses_and_gradients(tiny, tmp_path, monkeypatch, name):
    """The same initialised model on the CPU and on a GPU: the same losses and gradients to float32
    rounding (the GPU sums in another order), propagating on the torch backend on both."""
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    settings = {"dataset": "tiny", "model": name, "embedding_dim": 8, "backend": "torch",
                "precision": "fp32"}  # float32 rounding is what the tolerance is for
    if "knn_k" in MODELS[name].hyperparameters:
        settings["knn_k"] = 5
    users, positives, negatives = next(iter(BPRBatches(tiny.train, tiny.n_items,
                                                        torch.Generator().manual_seed(0)).epoch(64)))
    results = []
    for device in ("cpu", "cuda"):
        model = model_for(build_config(settings | {"device": device}), tiny, torch.device(device))
        assert backend_of(model) == "torch"
        terms = model.loss(users.to(device), positives.to(device), negatives.to(device))
        model.zero_grad()
        sum(terms.values()).backward()
        results.append(({k: float(v) for k, v in terms.items()},
                        {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}))
    (terms_cpu, grads_cpu), (terms_gpu, grads_gpu) = results
    assert terms_gpu == pytest.approx(terms_cpu, rel=1e-4)
    assert grads_gpu.keys() == grads_cpu.keys() and grads_cpu
    for key in grads_cpu:
        torch.testing.assert_close(grads_gpu[key], grads_cpu[key], rtol=1e-4, atol=1e-6, msg=key)


@needs_cuda
@pytest.mark.parametrize("name", ["siger", "freedom"])
def test_a_cuda_run_trains_and_its_checkpoint_loads_on_the_cpu(tmp_path, monkeypatch, name):
    from dgl_synergraph import load_run

    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path / "cache"))
    config = build_config({"dataset": "sample", "model": name, "epochs": 2, "embedding_dim": 16, "knn_k": 5,
                           "device": "cuda"})
    train(config, out=tmp_path / "run", progress=False)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert 0 < metrics["valid"]["recall@20"] <= 1
    run = load_run(tmp_path / "run", device="cpu")
    assert run.evaluate("valid")["recall@20"] == pytest.approx(metrics["valid"]["recall@20"], rel=1e-3)
