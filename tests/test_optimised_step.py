"""The optimised training step against the plain fp32 code it replaces, on a tiny dataset.

Tolerances: the fused Adam differs from torch.optim.Adam by float32 rounding only (ATen's lerp
uses FMA), so parameters agree to 1e-5 relative after several steps; bf16 projections change
numerics by design, so the bf16 loss must stay within 2% and every gradient within cosine 0.99.
"""

import json
import sys

import pytest
import torch

from dgl_synergraph import build_config
from dgl_synergraph.nn import propagation
from dgl_synergraph.training import fused_adam
from dgl_synergraph.training.fused_adam import FusedAdam
from dgl_synergraph.training.sampler import BPRBatches
from dgl_synergraph.training.trainer import model_for


def _mgcn(tiny, tmp_path, monkeypatch, **settings):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    config = build_config({"dataset": "tiny", "model": "mgcn", "knn_k": 5, "embedding_dim": 16, "precision": "fp32"}
                          | settings)
    return model_for(config, tiny, torch.device("cpu"))


def _batches(tiny):
    return list(BPRBatches(tiny.train, tiny.n_items, torch.Generator().manual_seed(0)).epoch(256))


@pytest.mark.skipif(not fused_adam.available(), reason="no C compiler for the fused kernel")
def test_fused_mgcn_steps_equal_torch_adam_steps(tiny, tmp_path, monkeypatch):
    plain, fused = _mgcn(tiny, tmp_path, monkeypatch), _mgcn(tiny, tmp_path, monkeypatch)
    assert isinstance(plain.projections["image"].features, torch.nn.Parameter)  # fine-tuned, as MMRec
    optimisers = [torch.optim.Adam(plain.parameters(), lr=0.01), FusedAdam(fused.parameters(), lr=0.01)]
    for users, positives, negatives in _batches(tiny)[:4]:
        losses = []
        for model, optimiser in zip((plain, fused), optimisers):
            loss = sum(model.loss(users, positives, negatives).values())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
        assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    for (name, a), (_, b) in zip(plain.named_parameters(), fused.named_parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)


def test_bf16_projection_and_infonce_stay_close_to_fp32(tiny, tmp_path, monkeypatch):
    fp32 = _mgcn(tiny, tmp_path, monkeypatch)
    bf16 = _mgcn(tiny, tmp_path, monkeypatch, precision="bf16")
    assert bf16.projections["image"].bfloat16 and not fp32.projections["image"].bfloat16
    assert (bf16.similarity_dtype, fp32.similarity_dtype) == (torch.bfloat16, None)  # InfoNCE products too
    users, positives, negatives = _batches(tiny)[0]
    grads = []
    for model in (fp32, bf16):
        loss = sum(model.loss(users, positives, negatives).values())
        model.zero_grad()
        loss.backward()
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
        assert loss.dtype == torch.float32
        if model is fp32:
            reference = float(loss)
    assert float(loss) == pytest.approx(reference, rel=0.02)
    for name, grad in grads[0].items():
        cosine = torch.nn.functional.cosine_similarity(grad.flatten(), grads[1][name].flatten(), dim=0)
        assert cosine > 0.99, name
    # frozen tables are stored in bf16 once; fine-tuned ones stay float32 parameters
    frozen = _mgcn(tiny, tmp_path, monkeypatch, precision="bf16", finetune_features=False)
    assert frozen.projections["image"].features.dtype == torch.bfloat16
    assert bf16.projections["image"].features.dtype == torch.float32


@pytest.mark.parametrize("model_name", ["mgcn", "synergraph"])
@pytest.mark.parametrize("share", [0.0, 1.0])  # whole-relation rows / per-row sums for the users' views
def test_views_of_the_batch_rows_give_the_loss_of_every_row(tiny, tmp_path, monkeypatch, model_name, share):
    """The training step computes the fused views, the user modality views and the losses at the
    batch's distinct users and items only; the plain code computes every node's views and indexes
    the batch's rows in them: the same loss terms and gradients."""
    monkeypatch.setattr(propagation, "AT_ROWS_AT_MOST", share)
    model = _mgcn(tiny, tmp_path, monkeypatch, **({"model": model_name, "circle_on": "both", "cl_weight": 0.01}
                                                   if model_name == "synergraph" else {}))
    users, positives, negatives = _batches(tiny)[0]
    assert len(torch.unique(users)) < len(users)  # repeats: the distinct-row positions are exercised
    results = []
    for restricted in (True, False):
        terms = (model.loss(users, positives, negatives) if restricted
                 else model.loss_terms(model.views(), users, positives, negatives))
        model.zero_grad()
        sum(terms.values()).backward()
        results.append(({k: float(v) for k, v in terms.items()},
                        {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (fast_terms, fast_grads), (plain_terms, plain_grads) = results
    assert fast_terms == pytest.approx(plain_terms, rel=1e-5)
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-7, msg=name)


def test_the_allocator_is_tuned_only_for_large_graphs():
    from types import SimpleNamespace

    from dgl_synergraph.training.trainer import LARGE_GRAPH_NODES, tune_allocator

    assert tune_allocator(SimpleNamespace(n_users=6_000, n_items=1_500)) is False
    large = SimpleNamespace(n_users=LARGE_GRAPH_NODES, n_items=1)
    if sys.platform == "linux":  # glibc's mallopt
        assert tune_allocator(large) is True


def test_freedom_projects_only_the_batch_rows_with_the_same_loss_and_gradients(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNERGRAPH_CACHE", str(tmp_path))
    config = build_config({"dataset": "tiny", "model": "freedom", "knn_k": 5, "embedding_dim": 16})
    model = model_for(config, tiny, torch.device("cpu"))
    model.on_epoch_start()
    users, positives, negatives = _batches(tiny)[0]
    results = []
    for restricted in (True, False):
        if not restricted:  # the plain code: project every item, index the batch rows afterwards
            for projection in model.projections.values():
                every_row = type(projection).forward.__get__(projection)
                monkeypatch.setattr(projection, "forward", lambda rows, f=every_row: f()[rows])
        terms = model.loss(users, positives, negatives)
        model.zero_grad()
        sum(terms.values()).backward()
        if restricted:  # the table's gradient covers the batch's rows only, as a sparse tensor
            assert model.projections["image"].features.grad.is_sparse
        results.append((float(terms["modality_bpr"]),
                        {n: (p.grad.to_dense() if p.grad.is_sparse else p.grad).clone()
                         for n, p in model.named_parameters() if p.grad is not None}))
    (fast, fast_grads), (plain, plain_grads) = results
    assert fast == pytest.approx(plain, rel=1e-6)
    assert "projections.image.features" in plain_grads  # fine-tuned, as in MMRec
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-5, atol=1e-8, msg=name)


@pytest.mark.parametrize("rows", [None, torch.tensor([4, 0, 7, 2])])
def test_the_fine_tuned_table_projection_has_autograds_gradients(rows):
    """``_TableProjection`` writes the table's gradient into a reused buffer: it must equal plain
    autograd's, also when a second backward pass accumulates into it."""
    from dgl_synergraph.nn.multimodal import ModalityProjection

    torch.manual_seed(0)
    table = torch.randn(9, 12)
    fast, plain = ModalityProjection(table, 5, finetune=True), ModalityProjection(table, 5, finetune=True)
    plain.load_state_dict(fast.state_dict())
    target = torch.randn(9 if rows is None else len(rows), 5)
    for model in (fast, plain):
        for _ in range(2):  # the second pass accumulates
            out = model(rows) if model is fast else torch.nn.functional.linear(
                model.features if rows is None else model.features[rows], model.linear.weight, model.linear.bias)
            ((out - target) ** 2).sum().backward()
    for (name, a), (_, b) in zip(fast.named_parameters(), plain.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6, msg=name)
    if rows is None:
        assert fast.features.grad is fast.grad_buffer  # reused, not reallocated
    fast.zero_grad(set_to_none=True)
    fast(rows).sum().backward()
    if rows is None:
        assert fast.features.grad is fast.grad_buffer
    else:  # a single pass gives the rows' gradient only, as a sparse tensor over the same buffer
        grad = fast.features.grad
        assert grad.is_sparse and grad.is_coalesced() and grad._values().data_ptr() == fast.grad_buffer.data_ptr()
        assert sorted(grad._indices()[0].tolist()) == sorted(rows.tolist())
        plain.zero_grad(set_to_none=True)
        torch.nn.functional.linear(plain.features[rows], plain.linear.weight, plain.linear.bias).sum().backward()
        torch.testing.assert_close(grad.to_dense(), plain.features.grad, rtol=1e-5, atol=1e-6)


def test_the_bf16_table_follows_every_update_of_the_fine_tuned_table():
    """The bf16 copy is rewritten by FusedAdam and re-cast after any other in-place change."""
    from dgl_synergraph.nn.multimodal import ModalityProjection

    projection = ModalityProjection(torch.randn(20, 16), 4, finetune=True)
    projection.use_bfloat16()
    for optimiser_type in ([FusedAdam] if fused_adam.available() else []) + [torch.optim.Adam]:
        optimiser = optimiser_type(projection.parameters(), lr=0.1)
        for _ in range(2):
            projection().sum().backward()
            optimiser.step()
            optimiser.zero_grad()
            assert torch.equal(projection.bf16_table(), projection.features.detach().bfloat16())
    with torch.no_grad():
        projection.load_state_dict({k: v + 1 for k, v in projection.state_dict().items()})
    assert torch.equal(projection.bf16_table(), projection.features.detach().bfloat16())
    expected = torch.nn.functional.linear(projection.features.detach(), projection.linear.weight, projection.linear.bias)
    with torch.no_grad():
        torch.testing.assert_close(projection(), expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_exactly_where_the_device_multiplies_it_natively(tiny, tiny_dir, tmp_path,
                                                                                monkeypatch, native):
    """precision=auto resolves per device (emulated bf16 would be slower than fp32), and the run
    records what it resolved to beside the "auto" it was given."""
    from dgl_synergraph import utils
    from dgl_synergraph.training import train

    monkeypatch.setattr(utils, "native_bf16", lambda device: native)
    model = _mgcn(tiny, tmp_path, monkeypatch, precision="auto")
    assert model.projections["image"].bfloat16 is native
    assert model.similarity_dtype == (torch.bfloat16 if native else None)
    config = build_config({"dataset": "tiny", "data_dir": str(tiny_dir), "model": "mgcn", "knn_k": 5,
                           "embedding_dim": 8, "epochs": 1, "precision": "auto"})
    train(config, out=tmp_path / "run", dataset=tiny, progress=False)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["precision"] == "auto"
    assert saved["runtime"]["precision"] == ("bf16" if native else "fp32")


def test_only_the_models_that_passed_the_bf16_check_default_to_auto_precision():
    """bf16 passed Baby's three-seed check for MGCN, FREEDOM and SIGER, not SynerGraph
    (docs/results.md), so only those three default to it; --precision still overrides."""
    defaults = {name: build_config({"model": name}).precision for name in ("lightgcn", "freedom", "mgcn",
                                                                         "synergraph", "siger")}
    assert defaults == {"lightgcn": "fp32", "freedom": "auto", "mgcn": "auto", "synergraph": "fp32", "siger": "auto"}
    assert build_config({"model": "mgcn", "precision": "fp32"}).precision == "fp32"
    assert build_config({"model": "siger", "precision": "fp32"}).precision == "fp32"
    assert build_config({"model": "freedom", "precision": "fp32"}).precision == "fp32"


def _plain_siger_loss(model, users, positives, negatives):
    """SIGER's loss written plainly: every pass propagates every layer, and each modality's user
    view is its own sparse product (what the shared-layer, fused-user step replaces)."""
    from dgl_synergraph.losses import anchor_info_nce, bpr_loss, info_nce, l2_penalty

    def semantic(projected, perturb):
        items, user_views = {}, {}
        for m in model.modalities:
            h = projected[m]
            for layer in range(model.n_sem_layers):
                h = model.sem_steps[m](h)
                if perturb and (model.perturb_layers == "all" or layer == model.n_sem_layers - 1):
                    h = model._perturb(h)
            if perturb and model.n_sem_layers == 0:
                h = model._perturb(h)
            items[m], user_views[m] = h, model.ui_encoder.items_to_users(h)
        return items, user_views

    fuse = model._fuse
    b_user, b_item = model.ui_encoder(model.user_embedding, model.item_embedding)
    projected = model.project()
    s_item, s_user = semantic(projected, False)
    e_user, e_item = b_user + fuse(s_user), b_item + fuse(s_item)
    u, p, n = e_user[users], e_item[positives], e_item[negatives]
    (i1, u1), (i2, u2) = semantic(projected, True), semantic(projected, True)
    t = model.cl_temperature
    return {
        "bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1)),
        "reg": model.reg_weight * l2_penalty(model.user_embedding[users], model.item_embedding[positives],
                                             model.item_embedding[negatives]),
        "perturb_cl": model.cl_weight * (info_nce(fuse(u1)[users], fuse(u2)[users], t)
                                         + info_nce(fuse(i1)[positives], fuse(i2)[positives], t)),
        "anchor": model.anchor_weight * (
            anchor_info_nce(b_user[users], [s_user[m][users] for m in model.modalities], model.anchor_temperature)
            + anchor_info_nce(b_item[positives], [s_item[m][positives] for m in model.modalities],
                              model.anchor_temperature)),
        "align": model.align_weight * (info_nce(b_user[users], fuse(s_user)[users], model.align_temperature)
                                       + info_nce(b_item[positives], fuse(s_item)[positives], model.align_temperature)),
    }


@pytest.mark.parametrize("layers", [{"n_sem_layers": 1}, {"n_sem_layers": 2}, {"n_sem_layers": 2, "perturb_layers": "last"},
                                    {"n_sem_layers": 0}])
def test_siger_step_shares_clean_layers_and_fuses_user_views_like_the_plain_code(tiny, tmp_path, monkeypatch, layers):
    """The perturbed passes start from the clean pass's layer and the fused user view is one
    product: the same loss terms and gradients as the plain code, from the same random numbers."""
    model = _mgcn(tiny, tmp_path, monkeypatch, model="siger", **layers)
    users, positives, negatives = _batches(tiny)[0]
    results = []
    for loss in (type(model).loss, _plain_siger_loss):
        torch.manual_seed(7)  # the perturbations draw the same noise in the same order
        terms = loss(model, users, positives, negatives)
        model.zero_grad()
        sum(terms.values()).backward()
        results.append(({k: float(v) for k, v in terms.items()},
                        {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None}))
    (fast_terms, fast_grads), (plain_terms, plain_grads) = results
    assert fast_terms["perturb_cl"] > 0 and fast_terms["anchor"] > 0
    assert fast_terms == pytest.approx(plain_terms, rel=1e-5)
    assert fast_grads.keys() == plain_grads.keys()
    for name in plain_grads:
        torch.testing.assert_close(fast_grads[name], plain_grads[name], rtol=1e-4, atol=1e-7, msg=name)
    # scoring uses the same fused user view: the mean of the per-modality user views
    with torch.no_grad():
        user, _ = model.embeddings()
        b_user, _ = model.ui_encoder(model.user_embedding, model.item_embedding)
        items, _ = model.semantic(model.project())
        plain_user = b_user + model._fuse({m: model.ui_encoder.items_to_users(h) for m, h in items.items()})
    torch.testing.assert_close(user, plain_user, rtol=1e-5, atol=1e-7)
