"""Write the exploratory notebooks (``.ipynb``) from the cell sources below.

    .venv/bin/python notebooks/build_notebooks.py

The notebooks run top to bottom on the embedded ``sample`` dataset in a few minutes on 2 CPU
cores; ``tests/test_notebooks.py`` executes them. Edit the sources here, then rebuild.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import os, tempfile
os.environ.setdefault("DGLBACKEND", "pytorch")
os.environ.setdefault("SYNERGRAPH_CACHE", os.path.join(tempfile.gettempdir(), "synergraph-notebooks"))
import numpy as np
import matplotlib.pyplot as plt
import torch
from dgl_synergraph.data import load_dataset
DATA = load_dataset("sample")
print(DATA.summary())"""

EXPLORE = [
    new_markdown_cell("# 01 · Explore the data\n\nThe embedded `sample` dataset: a dense corner of Amazon Baby "
                      "(real interactions, derived features; see `datasets/make_sample.py`). How sparse is it, how "
                      "skewed are the degrees, and do the modality features say anything about who buys what?"),
    new_code_cell(SETUP),
    new_code_cell("""\
train = DATA.csr("train")
user_deg = np.asarray(train.sum(1)).ravel()
item_deg = np.asarray(train.sum(0)).ravel()
sparsity = 1 - train.nnz / (DATA.n_users * DATA.n_items)
print(f"users {DATA.n_users}, items {DATA.n_items}, train interactions {train.nnz}, sparsity {sparsity:.4%}")
print(f"user degree: median {np.median(user_deg):.0f}, max {user_deg.max():.0f}; "
      f"item degree: median {np.median(item_deg):.0f}, max {item_deg.max():.0f}")
fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
for ax, deg, name in zip(axes, (user_deg, item_deg), ("users", "items")):
    values, counts = np.unique(deg[deg > 0], return_counts=True)
    ax.loglog(values, counts, "o", ms=3)
    ax.set(title=f"training degree distribution of {name}", xlabel="degree", ylabel=f"number of {name}")
    ax.grid(alpha=0.3)
plt.tight_layout()"""),
    new_markdown_cell("## Do modality neighbours share users?\n\nFor each modality, build the top-10 cosine kNN "
                      "graph (the same builder the models use) and count how often an item and its neighbour "
                      "have at least one training user in common, against random item pairs."),
    new_code_cell("""\
from dgl_synergraph.graphs.knn import cached_knn_graph
co = (train.T @ train).tocsr()  # item x item co-interaction counts (sparse)
rng = np.random.default_rng(0)

def share_rate(src, dst):
    keep = src != dst
    return float((np.asarray(co[src[keep], dst[keep]]).ravel() > 0).mean())

rates = {}
for modality in DATA.modalities:
    g = cached_knn_graph(DATA.features[modality], k=10)
    rates[modality] = share_rate(g.src.numpy(), g.dst.numpy())
rand_src = rng.integers(DATA.n_items, size=20000)
rand_dst = rng.integers(DATA.n_items, size=20000)
rates["random pairs"] = share_rate(rand_src, rand_dst)
for name, rate in rates.items():
    print(f"{name:>12}: {rate:.1%} of pairs share a training user")
plt.figure(figsize=(5, 3.5))
plt.bar(list(rates), list(rates.values()), color=["#4C72B0", "#DD8452", "#999999"][: len(rates)])
plt.ylabel("pairs sharing >= 1 user"); plt.title("kNN neighbours vs random pairs"); plt.grid(axis="y", alpha=0.3)"""),
    new_markdown_cell("## Feature similarity against co-interaction\n\nSample random item pairs, bin them by "
                      "cosine similarity of each modality (deciles), and plot the mean number of common training "
                      "users per bin; the dashed lines are the same mean over each item's top-10 kNN neighbours, "
                      "the pairs the models' item graphs actually use."),
    new_code_cell("""\
pairs = rng.integers(DATA.n_items, size=(300000, 2))
pairs = pairs[pairs[:, 0] != pairs[:, 1]]
common = np.asarray(co[pairs[:, 0], pairs[:, 1]]).ravel()
plt.figure(figsize=(6.5, 4))
for colour, modality in zip(("#4C72B0", "#DD8452"), DATA.modalities):
    x = DATA.features[modality]
    unit = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    cos = (unit[pairs[:, 0]] * unit[pairs[:, 1]]).sum(1)
    bins = np.quantile(cos, np.linspace(0, 1, 11))
    which = np.clip(np.digitize(cos, bins[1:-1]), 0, 9)
    centres = [cos[which == b].mean() for b in range(10)]
    means = [common[which == b].mean() for b in range(10)]
    plt.plot(centres, means, "o-", color=colour, label=f"{modality}: random pairs by decile")
    g = cached_knn_graph(x, k=10)
    keep = (g.src != g.dst).numpy()
    knn_common = np.asarray(co[g.src.numpy()[keep], g.dst.numpy()[keep]]).ravel().mean()
    plt.axhline(knn_common, color=colour, ls="--", label=f"{modality}: top-10 kNN pairs ({knn_common:.2f})")
plt.xlabel("cosine similarity (decile mean)"); plt.ylabel("mean common training users")
plt.title("more similar features, more shared users?"); plt.legend(fontsize=8); plt.grid(alpha=0.3)"""),
]

TRAIN_COMPARE = [
    new_markdown_cell("# 02 · Train and compare\n\nTrain MostPop, LightGCN and SynerGraph on `sample` through the "
                      "Python API (a short epoch budget so the notebook runs in a minute or two), compare them, and "
                      "ask the best one what a user should see next."),
    new_code_cell(SETUP),
    new_code_cell("""\
import tempfile
from pathlib import Path
from dgl_synergraph import build_config, load_run, train
RUNS = Path(tempfile.mkdtemp(prefix="synergraph-nb02-"))
budget = {"dataset": "sample", "epochs": 12, "lr": 0.005}
settings = {  # MostPop has no hyperparameters; the learned models get 32-d embeddings
    "mostpop": {"model": "mostpop"},
    "lightgcn": {"model": "lightgcn", "embedding_dim": 32},
    "synergraph": {"model": "synergraph", "embedding_dim": 32, "knn_k": 10},
}
results = {name: train(build_config(budget, s), out=RUNS / name, dataset=DATA, progress=False)
           for name, s in settings.items()}"""),
    new_code_cell("""\
from dgl_synergraph.reports.tables import text_table
rows = [[name, r.metrics["best_epoch"], r.metrics["valid"]["recall@20"], r.metrics["test"]["recall@20"],
         r.metrics["test"]["ndcg@20"]] for name, r in results.items()]
print(text_table(["model", "best epoch", "valid R@20", "test R@20", "test N@20"], rows))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
ax1.bar(list(results), [r.metrics["test"]["recall@20"] for r in results.values()], color="#4C72B0")
ax1.set(title="test Recall@20", ylabel="Recall@20"); ax1.grid(axis="y", alpha=0.3)
for name, r in results.items():
    if r.history:
        ax2.plot([h["epoch"] for h in r.history], [h["valid_recall@20"] for h in r.history], label=name)
ax2.set(title="validation Recall@20 per epoch", xlabel="epoch"); ax2.legend(); ax2.grid(alpha=0.3)
plt.tight_layout()"""),
    new_markdown_cell("## What should user 3 see?\n\n`load_run` reads the run directory back (checksum-verified "
                      "data, best checkpoint). Items come back as Amazon ASINs because the sample ships "
                      "`i_id_mapping.csv`; users are named by their Baby user id (`u_id_mapping.csv`)."),
    new_code_cell("""\
best_name = max((n for n in results if n != "mostpop"), key=lambda n: results[n].metrics["valid"]["recall@20"])
run = load_run(RUNS / best_name)
user = str(DATA.raw_user_ids[0])
rec = run.recommend([user], k=10)[0]
seen = DATA.csr("train")[0].indices
print(f"model {best_name} (chosen on validation); user {user} bought {len(seen)} items in training")
print(text_table(["rank", "item (ASIN)", "score"], [[i + 1, item, s] for i, (item, s) in enumerate(zip(rec.items, rec.scores))]))
assert not set(rec.items) & {DATA.raw_item_ids[i] for i in seen}  # nothing already bought"""),
]

ABLATIONS = [
    new_markdown_cell("# 03 · SynerGraph ablations\n\nThe paper's three first experiments on `sample`, with a short "
                      "budget: (1) purifier on vs off, (2) Recall@20 against the kNN top-K, (3) circle loss on vs "
                      "off with a similarity analysis of fused vs single-modality embeddings. Numbers from a "
                      "12-epoch budget on a small sample are indicative only; `docs/results.md` has full runs."),
    new_code_cell(SETUP),
    new_code_cell("""\
import tempfile
from pathlib import Path
from dgl_synergraph import build_config, train
RUNS = Path(tempfile.mkdtemp(prefix="synergraph-nb03-"))
budget = {"dataset": "sample", "model": "synergraph", "epochs": 12, "embedding_dim": 32, "lr": 0.005, "knn_k": 10}

def run(name, **overrides):
    return train(build_config(budget, overrides), out=RUNS / name, dataset=DATA, progress=False)

base = run("default")
print("default valid/test R@20:", round(base.metrics["valid"]["recall@20"], 4), round(base.metrics["test"]["recall@20"], 4))"""),
    new_markdown_cell("## 1 · Purifier on vs off"),
    new_code_cell("""\
no_purifier = run("no-purifier", purifier=False)
for name, r in (("with purifier", base), ("without purifier", no_purifier)):
    print(f"{name:>17}: valid R@20 {r.metrics['valid']['recall@20']:.4f}  test R@20 {r.metrics['test']['recall@20']:.4f}")
gates = {k: v for k, v in base.history[-1].items() if k.startswith("gate_")}
print("purifier gates at the last epoch:", {k: round(v, 3) for k, v in gates.items()})"""),
    new_markdown_cell("## 2 · Top-K of the modality kNN graphs"),
    new_code_cell("""\
ks = [5, 10, 20, 35]
by_k = {10: base}
for k in ks:
    if k not in by_k:
        by_k[k] = run(f"k{k}", knn_k=k)
plt.figure(figsize=(5.5, 3.8))
plt.plot(ks, [by_k[k].metrics["valid"]["recall@20"] for k in ks], "o-", label="valid")
plt.plot(ks, [by_k[k].metrics["test"]["recall@20"] for k in ks], "s--", label="test")
plt.xlabel("top-K"); plt.ylabel("Recall@20"); plt.title("SynerGraph: Recall@20 against K"); plt.legend(); plt.grid(alpha=0.3)"""),
    new_markdown_cell("## 3 · Circle loss on vs off, and what it does to the embeddings\n\nThe purifier circle "
                      "loss rewards similarity between a user and the fused item embedding and penalises "
                      "similarity to the single-modality embeddings. Compare cos(fused item, modality view) "
                      "with and without it."),
    new_code_cell("""\
import torch.nn.functional as F
from dgl_synergraph import load_run
no_circle = run("no-circle", circle_weight=0.0)
fig, axes = plt.subplots(1, len(DATA.modalities), figsize=(11, 3.6))
for name, r in (("circle on", base), ("circle off", no_circle)):
    model = load_run(r.run_dir).model
    with torch.no_grad():
        views = model.views()
    for ax, m in zip(np.atleast_1d(axes), DATA.modalities):
        cos = F.cosine_similarity(views.item, views.modal_item[m], dim=1).numpy()
        ax.hist(cos, bins=40, alpha=0.6, label=f"{name} (mean {cos.mean():.2f})")
        ax.set(title=f"cos(fused item, {m} view)", xlabel="cosine"); ax.legend(fontsize=8)
    print(f"{name:>10}: valid R@20 {r.metrics['valid']['recall@20']:.4f}  test R@20 {r.metrics['test']['recall@20']:.4f}")
plt.tight_layout()"""),
]


def write(name: str, cells: list) -> None:
    notebook = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.write(notebook, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    write("01_explore_data", EXPLORE)
    write("02_train_and_compare", TRAIN_COMPARE)
    write("03_synergraph_ablations", ABLATIONS)
    print("wrote", ", ".join(sorted(p.name for p in HERE.glob("*.ipynb"))))
