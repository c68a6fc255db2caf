import numpy as np
import pytest
import torch

from dgl_synergraph.graphs import build_heterograph
from dgl_synergraph.models.lightgcn import LightGCN
from dgl_synergraph.nn import propagation
from dgl_synergraph.nn.propagation import LightGCNEncoder
from dgl_synergraph.training.sampler import NegativeSampler


def test_sampler_never_returns_a_training_positive(tiny):
    gen = torch.Generator().manual_seed(0)
    sampler = NegativeSampler(tiny.train, tiny.n_items, gen)
    train = set(map(tuple, tiny.train.tolist()))
    users = torch.as_tensor(np.repeat(tiny.train[:, 0], 20))
    negatives = sampler.sample(users)
    assert not any((int(u), int(i)) in train for u, i in zip(users, negatives))
    # negatives come from items seen in training and cover many of them
    assert set(negatives.tolist()) <= set(tiny.train[:, 1].tolist())
    assert len(set(negatives.tolist())) > tiny.n_items // 2


def test_sampler_is_reproducible_from_its_generator(tiny):
    users = torch.as_tensor(tiny.train[:, 0])
    a = NegativeSampler(tiny.train, tiny.n_items, torch.Generator().manual_seed(5)).sample(users)
    b = NegativeSampler(tiny.train, tiny.n_items, torch.Generator().manual_seed(5)).sample(users)
    assert torch.equal(a, b)


def _dense_norm_adjacency(n_users, n_items, pairs):
    n = n_users + n_items
    a = np.zeros((n, n))
    for u, i in pairs:
        a[u, n_users + i] = a[n_users + i, u] = 1.0
    deg = a.sum(1)
    inv = np.where(deg > 0, 1 / np.sqrt(np.maximum(deg, 1)), 0)
    return inv[:, None] * a * inv[None, :]


def test_lightgcn_propagation_equals_dense_reference():
    pairs = np.array([[0, 0], [0, 2], [1, 1], [2, 2], [2, 3], [3, 0], [3, 3]])
    n_users, n_items, layers = 5, 4, 3  # user 4 is isolated
    graph = build_heterograph(n_users, n_items, pairs)
    encoder = LightGCNEncoder(graph, layers)
    torch.manual_seed(0)
    hu, hi = torch.randn(n_users, 6, dtype=torch.float64), torch.randn(n_items, 6, dtype=torch.float64)
    got_u, got_i = encoder(hu.float(), hi.float())

    a_hat = _dense_norm_adjacency(n_users, n_items, pairs)
    e = np.concatenate([hu.numpy(), hi.numpy()])
    layers_out = [e]
    for _ in range(layers):
        layers_out.append(a_hat @ layers_out[-1])
    expected = np.mean(layers_out, axis=0)
    np.testing.assert_allclose(got_u.numpy(), expected[:n_users], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_i.numpy(), expected[n_users:], rtol=1e-5, atol=1e-6)


def test_lightgcn_gradients_reach_embeddings(tiny):
    graph = build_heterograph(tiny.n_users, tiny.n_items, tiny.train)
    model = LightGCN(graph, embedding_dim=8, n_layers=2, reg_weight=1e-4)
    terms = model.loss(torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([2, 3]))
    sum(terms.values()).backward()
    assert model.user_embedding.grad.abs().sum() > 0
    assert model.item_embedding.grad.abs().sum() > 0


@pytest.mark.parametrize("share", [0.0, 1.0])  # whole-relation rows / per-row sums
def test_items_to_users_at_chosen_users_equals_the_dense_reference_rows(monkeypatch, share):
    monkeypatch.setattr(propagation, "AT_ROWS_AT_MOST", share)
    pairs = np.array([[0, 0], [0, 2], [1, 1], [2, 2], [2, 3], [3, 0], [3, 3], [3, 1]])
    n_users, n_items = 5, 4  # user 4 is isolated: its row is zero
    encoder = LightGCNEncoder(build_heterograph(n_users, n_items, pairs), 1)
    a_hat = torch.tensor(_dense_norm_adjacency(n_users, n_items, pairs)[:n_users, n_users:], dtype=torch.float32)
    users = torch.tensor([3, 0, 4, 3])  # any order, repeats allowed
    h = torch.randn(n_items, 6, generator=torch.Generator().manual_seed(0), requires_grad=True)
    upstream = torch.randn(len(users), 6, generator=torch.Generator().manual_seed(1))
    got = encoder.items_to_users(h, users)
    torch.testing.assert_close(got, a_hat[users] @ h.detach())
    torch.testing.assert_close(got, encoder.items_to_users(h)[users].detach())  # the whole-table product's rows
    (grad,) = torch.autograd.grad((got * upstream).sum(), h)
    torch.testing.assert_close(grad, a_hat[users].t() @ upstream)


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("restrict", ["both", "users"])
@pytest.mark.parametrize("share", [0.0, 1.0])
def test_lightgcn_encoder_at_chosen_rows_equals_the_whole_graphs_rows(tiny, layers, restrict, share, monkeypatch):
    """A training step asks the encoder for the batch's rows only (the last layer then propagates
    into them alone): the same embeddings and gradients as every row, indexed afterwards."""
    monkeypatch.setattr(propagation, "AT_ROWS_AT_MOST", share)
    encoder = LightGCNEncoder(build_heterograph(tiny.n_users, tiny.n_items, tiny.train), layers)
    generator = torch.Generator().manual_seed(0)
    h_user = torch.randn(tiny.n_users, 8, generator=generator, requires_grad=True)
    h_item = torch.randn(tiny.n_items, 8, generator=generator, requires_grad=True)
    users = torch.tensor([5, 0, 17, 3])
    items = torch.tensor([2, 9, 1]) if restrict == "both" else None
    weights = torch.randn(len(users), 8, generator=generator), torch.randn(tiny.n_items if items is None else len(items), 8,
                                                                           generator=generator)
    results = []
    for at_rows in (True, False):
        got_user, got_item = (encoder(h_user, h_item, users, items) if at_rows
                              else [t if rows is None else t[rows]
                                    for t, rows in zip(encoder(h_user, h_item), (users, items))])
        loss = (got_user * weights[0]).sum() + (got_item * weights[1]).sum()
        results.append((got_user.detach(), got_item.detach(), *torch.autograd.grad(loss, (h_user, h_item))))
    for fast, plain in zip(*results):
        torch.testing.assert_close(fast, plain)


def test_weighted_adjacency_product_and_gradient_equal_the_dense_matrix():
    """The CSR product (32-bit indices, written by addmm into a fresh buffer) against the dense
    matrix it stands for, duplicate edges summed."""
    gen = torch.Generator().manual_seed(3)
    src = torch.randint(0, 40, (300,), generator=gen)
    dst = torch.randint(0, 25, (300,), generator=gen)
    weight = torch.rand(300, generator=gen)
    dense = torch.zeros(25, 40).index_put_((dst, src), weight, accumulate=True)
    adjacency = propagation.WeightedAdjacency(src, dst, weight, 40, 25)
    assert adjacency.matrix.crow_indices().dtype == torch.int32
    assert adjacency.num_edges == int((dense != 0).sum())
    h = torch.randn(40, 6, generator=gen, requires_grad=True)
    out = adjacency(h)
    grad = torch.randn(25, 6, generator=gen)
    out.backward(grad)
    torch.testing.assert_close(out, dense @ h.detach())
    torch.testing.assert_close(h.grad, dense.t() @ grad)
