"""SynerGraph, MGCN and FREEDOM: losses by hand, ablation switches, training behaviour."""

import math

import pytest
import torch

from dgl_synergraph import build_config
from dgl_synergraph.errors import ConfigError
from dgl_synergraph.evaluation import split_evaluator
from dgl_synergraph.models import build_model
from dgl_synergraph.losses import circle_loss, info_nce
from dgl_synergraph.training import train
from dgl_synergraph.training.trainer import model_for


def test_circle_loss_matches_hand_computation():
    # one anchor (a user), its positive (fused item) at cosine 0.8, two negatives (the item's
    # image and text embeddings) at 0.3 and 0.5; m = 0.25, gamma = 2
    # alpha_p = 1.25 - 0.8 = 0.45, logit_p = -2 * 0.45 * (0.8 - 0.75) = -0.045
    # alpha_n = 0.55, 0.75; logit_n = 2*0.55*(0.3-0.25) = 0.055, 2*0.75*(0.5-0.25) = 0.375
    # L = softplus(log(e^0.055 + e^0.375) - 0.045) = softplus(0.875893) = 1.224075
    loss = circle_loss(torch.tensor([0.8]), torch.tensor([[0.3, 0.5]]), margin=0.25, gamma=2.0)
    assert float(loss) == pytest.approx(1.2240749, abs=1e-6)
    # a masked negative does not count: only 0.3 remains -> softplus(0.055 - 0.045)
    masked = circle_loss(torch.tensor([0.8]), torch.tensor([[0.3, 0.5]]), 0.25, 2.0,
                         negative_mask=torch.tensor([[True, False]]))
    assert float(masked) == pytest.approx(math.log1p(math.exp(0.01)), abs=1e-6)


def test_circle_loss_falls_when_positive_rises_and_weights_are_detached():
    s_p = torch.tensor([0.2], requires_grad=True)
    s_n = torch.tensor([[0.4, 0.1]], requires_grad=True)
    circle_loss(s_p, s_n).backward()
    assert s_p.grad.item() < 0 and (s_n.grad > 0).all()
    assert circle_loss(torch.tensor([0.9]), s_n.detach()) < circle_loss(torch.tensor([0.2]), s_n.detach())


def test_info_nce_matches_hand_computation():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[3.0, 0.0], [1.0, 1.0]])
    # cosines: row 0 -> (1, 1/sqrt2), row 1 -> (0, 1/sqrt2); t = 0.5
    c = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + math.exp(c / 0.5)))
    l1 = -math.log(math.exp(c / 0.5) / (math.exp(0) + math.exp(c / 0.5)))
    assert float(info_nce(a, p, 0.5)) == pytest.approx((l0 + l1) / 2, abs=1e-6)


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))


def _model(tiny, **settings):
    config = build_config({"dataset": "tiny", "embedding_dim": 8, **settings})
    return model_for(config, tiny, torch.device("cpu"))


def _batch(tiny):
    return (torch.as_tensor(tiny.train[:64, 0]), torch.as_tensor(tiny.train[:64, 1]),
            torch.as_tensor((tiny.train[:64, 1] + 1) % tiny.n_items))


def test_synergraph_ablation_switches_change_what_they_say(tiny, cache):
    full = _model(tiny, model="synergraph", knn_k=5)
    names = {n for n, _ in full.named_parameters()}
    assert any(n.startswith("purifiers.image.gate") for n in names)
    assert set(full.loss(*_batch(tiny))) == {"bpr", "reg", "circle"}

    no_purifier = _model(tiny, model="synergraph", knn_k=5, purifier=False)
    assert not any("purifiers" in n for n, _ in no_purifier.named_parameters())
    no_circle = _model(tiny, model="synergraph", knn_k=5, circle_weight=0.0)
    assert set(no_circle.loss(*_batch(tiny))) == {"bpr", "reg"}
    with_infonce = _model(tiny, model="synergraph", knn_k=5, cl_weight=0.1)
    assert set(with_infonce.loss(*_batch(tiny))) == {"bpr", "reg", "circle", "infonce"}
    text_only = _model(tiny, model="synergraph", knn_k=5, modalities="text")
    assert list(text_only.projections) == ["text"] and list(text_only.ii_encoders) == ["text"]
    k3 = _model(tiny, model="synergraph", knn_k=3)
    assert k3.ii_encoders["image"].step.num_edges(("item", "knn_image", "item")) == tiny.n_items * 3
    for placement in ("purifier", "side_content", "both"):
        model = _model(tiny, model="synergraph", knn_k=5, circle_on=placement)
        assert float(model.loss(*_batch(tiny))["circle"]) > 0


def test_synergraph_without_circle_loss_is_exactly_mgcn(tiny, cache):
    # why the "w/o circle loss" ablation row is the MGCN row: same parameters, same losses
    # one precision for both: MGCN's default (auto) differs from SynerGraph's (fp32)
    settings = dict(knn_k=5, cl_weight=0.01, finetune_features=False, precision="fp32")
    torch.manual_seed(3)
    synergraph = _model(tiny, model="synergraph", circle_weight=0.0, **settings)
    torch.manual_seed(3)
    mgcn = _model(tiny, model="mgcn", **settings)
    ours, theirs = dict(synergraph.named_parameters()), dict(mgcn.named_parameters())
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    a, b = synergraph.loss(*_batch(tiny)), mgcn.loss(*_batch(tiny))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_synergraph_defaults_per_dataset_and_validation():
    assert build_config({"model": "synergraph", "dataset": "baby"}).model_params["knn_k"] == 10
    clothing = build_config({"model": "synergraph", "dataset": "clothing"}).model_params
    assert (clothing["knn_k"], clothing["gate_norm"], clothing["gate_decay"]) == (10, True, 0.001)
    sports = build_config({"model": "synergraph", "dataset": "sports"}).model_params
    assert (sports["knn_k"], sports["cl_weight"], sports["gate_norm"]) == (20, 0.01, False)
    # no per-dataset default on sample: the constructor's; a given value beats the dataset's
    assert build_config({"model": "synergraph", "dataset": "sample"}).model_params["knn_k"] == 30
    assert build_config({"model": "synergraph", "dataset": "clothing", "knn_k": 30}).model_params["knn_k"] == 30
    assert build_config({"model": "mgcn"}).lr_decay == 0.96
    assert build_config({"model": "mgcn", "lr_decay": 1.0}).lr_decay == 1.0


@pytest.mark.parametrize("settings, message", [
    ({"circle_on": "items"}, "circle_on"),
    ({"modalities": "audio"}, "modalities"),
    ({"knn_k": 0}, "knn_k"),
    ({"knn_weighting": "cosine"}, "knn_weighting"),
    ({"circle_margin": 1.5}, "circle_margin"),
])
def test_invalid_synergraph_settings_are_config_errors(tiny, cache, settings, message):
    with pytest.raises(ConfigError, match=message):
        _model(tiny, model="synergraph", **settings)


def test_freedom_prunes_edges_each_epoch_and_scores_on_the_full_graph(tiny, cache):
    model = _model(tiny, model="freedom", knn_k=5, dropout=0.5)
    full_edges = model.ui_encoder.step.num_edges(("user", "interacts", "item"))
    torch.manual_seed(0)
    model.on_epoch_start()
    pruned = model.train_encoder.step.num_edges(("user", "interacts", "item"))
    assert pruned == int(full_edges * 0.5)
    assert set(model.loss(*_batch(tiny))) == {"bpr", "modality_bpr"}
    u1, _ = model.embeddings()
    model.on_epoch_start()
    u2, _ = model.embeddings()
    assert torch.equal(u1, u2)  # scoring never uses the pruned graph


def test_mgcn_gradient_reaches_every_part(tiny, cache):
    model = _model(tiny, model="mgcn", knn_k=5)
    terms = model.loss(*_batch(tiny))
    assert set(terms) == {"bpr", "reg", "infonce"}
    sum(terms.values()).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, name


@pytest.mark.parametrize("model", ["synergraph", "mgcn", "freedom"])
def test_multimodal_models_learn_on_tiny(tiny_dir, tiny, tmp_path, cache, model):
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": model, "knn_k": 5,
                           "embedding_dim": 16, "batch_size": 256, "lr": 0.01, "epochs": 20, "patience": 50})
    run = train(config, out=tmp_path / model, dataset=tiny, progress=False)
    losses = [r["loss"] for r in run.history]
    assert losses[-1] < losses[0]
    popular = build_model("mostpop", tiny, {}, "cpu").scorer()
    mostpop_valid = split_evaluator(tiny, "valid", [20], 4096, "cpu").evaluate(popular)["recall@20"]
    assert run.metrics["valid"]["recall@20"] > mostpop_valid + 0.05
    if model == "synergraph":
        # frozen feature tables are rebuilt from the data, not stored in checkpoints
        saved = torch.load(tmp_path / model / "checkpoint.pt", weights_only=False)
        assert not any(key.endswith(".features") for key in saved["best_model_state"])
        from dgl_synergraph.api import load_run
        assert len(load_run(tmp_path / model).recommend([0], k=5, ids="internal")[0].items) == 5
        row = run.history[-1]
        assert {"gate_image_mean", "gate_text_std", "circle_s_p", "circle_s_n"} <= set(row)
        assert 0 < row["gate_image_mean"] < 1


def test_gate_diagnostics_count_saturated_gates():
    from torch import nn

    from dgl_synergraph.nn.multimodal import Purifier, gate_diagnostics

    purifier = Purifier(4)
    purifier.last_gate = torch.tensor([[0.01, 0.5, 0.97, 0.949]])
    purifier.last_logits = torch.logit(purifier.last_gate)
    stats = gate_diagnostics(nn.ModuleDict({"image": purifier}))
    assert stats["gate_image_saturated"] == 0.5  # 0.01 and 0.97; 0.949 is not
    assert stats["gate_image_mean"] == pytest.approx((0.01 + 0.5 + 0.97 + 0.949) / 4)
    assert stats["gate_image_logit_std"] == pytest.approx(float(torch.logit(purifier.last_gate).std()))
    assert gate_diagnostics(None) == {}


def test_a_normalised_gate_input_holds_the_gate_whatever_the_projection_scale():
    """With gate_norm the gate sees LayerNorm(x_hat): scaling the projected feature by 1000 (what
    a runaway projection does) leaves the gate as it was; without it the gate saturates."""
    from dgl_synergraph.nn.multimodal import Purifier

    torch.manual_seed(0)
    ids, projected = torch.randn(50, 16), torch.randn(50, 16)
    normed, plain = Purifier(16, normalise_input=True), Purifier(16)
    normed(ids, projected)
    small = normed.last_gate
    normed(ids, 1000 * projected)
    torch.testing.assert_close(normed.last_gate, small, rtol=1e-4, atol=1e-5)
    plain(ids, 1000 * projected)
    assert ((plain.last_gate < 0.05) | (plain.last_gate > 0.95)).float().mean() > 0.9


def test_feature_norm_l2_gives_unit_rows_and_keeps_the_default_raw(tiny):
    from dgl_synergraph.nn.multimodal import ModalityProjection

    raw = torch.as_tensor(tiny.features["image"]).float()
    unit = ModalityProjection(raw, 8, finetune=False, unit_rows=True).features
    torch.testing.assert_close(unit.norm(dim=1), torch.ones(len(raw)))
    torch.testing.assert_close(ModalityProjection(raw, 8, finetune=False).features, raw)


def test_with_a_normalised_input_the_gate_decay_is_on_the_composed_map():
    """gate_norm + gate_decay: the LayerNorm's gain and shift are part of the gate's linear map,
    so the decay is on W diag(g) and W h + b (hand-computed here), its gradient reaches the gain,
    and every logit stays within its row norm times sqrt(dim) plus its bias, whatever the input."""
    from dgl_synergraph.nn.multimodal import Purifier

    torch.manual_seed(0)
    purifier = Purifier(6, normalise_input=True)
    with torch.no_grad():
        purifier.input_norm.weight.uniform_(0.5, 3.0)
        purifier.input_norm.bias.uniform_(-1.0, 1.0)
    W, b = purifier.gate.weight.detach(), purifier.gate.bias.detach()
    g, h = purifier.input_norm.weight.detach(), purifier.input_norm.bias.detach()
    by_hand = 0.5 * sum(float(W[i, j] * g[j]) ** 2 for i in range(6) for j in range(6)) \
        + 0.5 * sum(float(b[i] + sum(W[i, j] * h[j] for j in range(6))) ** 2 for i in range(6))
    term = purifier.penalty()
    assert float(term) == pytest.approx(by_hand, rel=1e-5)
    term.backward()
    assert purifier.input_norm.weight.grad is not None and purifier.input_norm.weight.grad.abs().sum() > 0
    purifier(torch.randn(40, 6), 1e4 * torch.randn(40, 6))
    composed_weight, composed_bias = W * g, b + W @ h
    bound = composed_weight.norm(dim=1) * 6 ** 0.5 + composed_bias.abs()
    assert (purifier.last_logits.abs() <= bound + 1e-4).all()


@pytest.mark.parametrize("model", ["synergraph", "siger"])
def test_gate_decay_adds_the_gates_l2_term_and_pulls_their_weights_in(tiny, cache, model):
    plain = _model(tiny, model=model, knn_k=5)
    assert "gate_reg" not in plain.loss(*_batch(tiny))  # off by default
    decayed = _model(tiny, model=model, knn_k=5, gate_decay=0.1)
    term = decayed.loss(*_batch(tiny))["gate_reg"]
    by_hand = sum(float(p.gate.weight.square().sum() + p.gate.bias.square().sum()) for p in decayed.purifiers.values())
    assert float(term) == pytest.approx(0.05 * by_hand, rel=1e-5)
    decayed.zero_grad()
    term.backward()
    for purifier in decayed.purifiers.values():  # d/dW of 0.1 * |W|^2 / 2 is 0.1 W
        torch.testing.assert_close(purifier.gate.weight.grad, 0.1 * purifier.gate.weight.detach())
    with pytest.raises(ConfigError, match="gate_decay"):
        _model(tiny, model=model, knn_k=5, gate_decay=-1.0)
