"""LightGCN-style propagation, forward + backward, in several forms side by side.

    .venv/bin/python benchmarks/propagation.py [--dataset baby] [--layers 2] [--dim 64]

Prints the median seconds of each form and its ratio to the fastest, measured in one run on the
same graph (the training split of the dataset, users + items, both directions). Then the same for
a weighted item-item relation (the text top-K kNN graph, ``--knn-k``), where the edge weights
cannot become node-side scaling: DGL's ``u_mul_e_sum`` against our ``ItemGraphEncoder``.
"""

from __future__ import annotations

import argparse

import dgl
import dgl.function as fn
import numpy as np
import torch

from benchmarks.common import machine, median_seconds, require_dataset
from dgl_synergraph.data import load_dataset
from dgl_synergraph.graphs import build_heterograph
from dgl_synergraph.graphs.knn import cached_knn_graph
from dgl_synergraph.nn.propagation import ItemGraphEncoder, LightGCNEncoder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--knn-k", type=int, default=20)
    args = parser.parse_args()

    data = load_dataset(path=require_dataset(args.dataset), modalities=["text"])
    n_u, n_i = data.n_users, data.n_items
    u, i = torch.as_tensor(data.train[:, 0]), torch.as_tensor(data.train[:, 1])
    n = n_u + n_i
    src = torch.cat([u, i + n_u])
    dst = torch.cat([i + n_u, u])
    homo = dgl.graph((src, dst), num_nodes=n)
    deg = homo.in_degrees().float().clamp(min=1)
    norm = deg.pow(-0.5)[:, None]
    homo.edata["w"] = (norm[src] * norm[dst]).flatten()
    sparse = torch.sparse_coo_tensor(torch.stack([dst, src]), homo.edata["w"], (n, n)).coalesce().to_sparse_csr()
    hetero = build_heterograph(n_u, n_i, data.train)
    encoder = LightGCNEncoder(hetero, args.layers)
    emb = torch.nn.Parameter(torch.randn(n, args.dim) * 0.1)

    def layers(step):
        def run():
            h, out = emb, [emb]
            for _ in range(args.layers):
                h = step(h)
                out.append(h)
            torch.stack(out).mean(0).sum().backward()
        return run

    def u_mul_e(h):
        with homo.local_scope():
            homo.ndata["h"] = h
            homo.update_all(fn.u_mul_e("h", "w", "m"), fn.sum("m", "h"))
            return homo.ndata["h"]

    def copy_u_node_norm(h):
        with homo.local_scope():
            homo.ndata["h"] = h * norm
            homo.update_all(fn.copy_u("h", "m"), fn.sum("m", "h"))
            return homo.ndata["h"] * norm

    def hetero_encoder():
        uu, ii = encoder(emb[:n_u], emb[n_u:])
        (uu.sum() + ii.sum()).backward()

    forms = {
        "dgl u_mul_e + sum (edge weights)": layers(u_mul_e),
        "dgl copy_u + sum, node-side norm": layers(copy_u_node_norm),
        "dgl.ops.u_mul_e_sum": layers(lambda h: dgl.ops.u_mul_e_sum(homo, h, homo.edata["w"])),
        "torch sparse CSR @ dense": layers(lambda h: sparse @ h),
        "LightGCNEncoder (heterograph, ours)": hetero_encoder,
    }
    print(f"{args.dataset}: {n_u} users, {n_i} items, {homo.num_edges()} directed edges, d={args.dim}, "
          f"{args.layers} layers, forward+backward; {machine()}")
    report(forms, args.repeat)
    # Sanity: the forms compute the same thing.
    with torch.no_grad():
        a, b = u_mul_e(emb), copy_u_node_norm(emb)
        assert np.allclose(a.numpy(), b.numpy(), atol=1e-5)

    knn = cached_knn_graph(data.features["text"], args.knn_k)
    item_graph = build_heterograph(n_u, n_i, data.train, {"knn_text": knn.as_relation()})
    relation = dgl.edge_type_subgraph(item_graph, ["knn_text"])
    weights = item_graph.edges["knn_text"].data["w"]
    item_encoder = ItemGraphEncoder(item_graph, "knn_text", args.layers)
    item_emb = torch.nn.Parameter(torch.randn(n_i, args.dim) * 0.1)

    def item_layers(step):
        def run():
            h = item_emb
            for _ in range(args.layers):
                h = step(h)
            h.sum().backward()
        return run

    print(f"{args.dataset} text kNN graph, top-{args.knn_k}: {n_i} items, {relation.num_edges()} weighted edges, "
          f"{args.layers} layers, forward+backward")
    report({
        "dgl.ops.u_mul_e_sum": item_layers(lambda h: dgl.ops.u_mul_e_sum(relation, h, weights)),
        "ItemGraphEncoder (CSR + CSR^T, ours)": lambda: item_encoder(item_emb).sum().backward(),
    }, args.repeat)
    with torch.no_grad():
        reference = item_emb
        for _ in range(args.layers):
            reference = dgl.ops.u_mul_e_sum(relation, reference, weights)
        assert torch.allclose(reference, item_encoder(item_emb), atol=1e-5)


def report(forms, repeat: int) -> None:
    times = {name: median_seconds(run, repeat=repeat) for name, run in forms.items()}
    best = min(times.values())
    for name, seconds in times.items():
        print(f"  {name:<40s} {seconds * 1000:8.1f} ms   x{seconds / best:4.1f}")


if __name__ == "__main__":
    main()
