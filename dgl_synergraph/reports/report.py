"""Compare run directories: grouped metrics table (mean ± std over seeds), training curves and a
Markdown page that embeds them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Any

import torch

from dgl_synergraph.errors import RunError
from dgl_synergraph.models.registry import MODELS
from dgl_synergraph.nn.multimodal import saturated_share
from dgl_synergraph.training.rundir import METRICS_FILE
from dgl_synergraph.reports.tables import text_table
from dgl_synergraph.utils import atomic_write

HEADLINE = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
# Settings that identify a configuration; seed and bookkeeping are left out so seeds group.
IGNORED_FOR_GROUPING = {"seed", "data_dir", "device", "checkpoint_every", "eval_batch_size"}


@dataclass
class RunRecord:
    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: list[dict[str, str]]

    @property
    def group_key(self) -> str:
        """dataset/model plus every hyperparameter that differs from the model's defaults."""
        params = self.config.get("model_params", {})
        keep = {k: v for k, v in self.config.items() if k not in IGNORED_FOR_GROUPING | {"model_params", "dataset", "model"}}
        return json.dumps({"dataset": self.config["dataset"], "model": self.config["model"], "params": params,
                           "run": keep}, sort_keys=True, default=str)


def find_runs(paths: list[str | Path]) -> list[RunRecord]:
    """Run directories named directly, or found one or two levels below a folder (e.g. ``runs/``),
    read through ``api.load_run`` (config, metrics and history; no model is loaded)."""
    from dgl_synergraph.api import load_run

    found: list[Path] = []
    for path in map(Path, paths):
        if (path / METRICS_FILE).is_file():
            found.append(path)
        elif path.is_dir():
            found += sorted(p.parent for p in path.glob(f"*/{METRICS_FILE}"))
            found += sorted(p.parent for p in path.glob(f"*/*/{METRICS_FILE}"))
        else:
            raise RunError(f"{path}: not a run directory (no metrics.json) nor a folder of runs")
    if not found:
        raise RunError(f"no finished runs (metrics.json) under {', '.join(map(str, paths))}")
    records = []
    for run in map(load_run, dict.fromkeys(found)):
        records.append(RunRecord(run.run_dir, run.config.model_dump(), run.metrics, run.history))
    return records


def _short_params(record: RunRecord, all_records: list[RunRecord]) -> str:
    """Hyperparameters that differ from the model's defaults for that dataset, or that vary among
    runs of the same model: what a reader needs to tell configurations apart."""
    model, dataset = record.config["model"], record.config["dataset"]
    entry = MODELS.get(model)
    defaults = {**entry.defaults, **entry.dataset_defaults.get(dataset, {})} if entry else {}
    same_model = [r for r in all_records if r.config["model"] == model]
    params = record.config.get("model_params", {})
    shown = [k for k in params
             if k not in defaults or params[k] != defaults[k]
             or len({json.dumps(r.config.get("model_params", {}).get(k)) for r in same_model}) > 1]
    return ", ".join(f"{k}={params[k]}" for k in shown) or "defaults"


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for one value; NaN mean for none)."""
    return (mean(values), stdev(values) if len(values) > 1 else 0.0) if values else (math.nan, 0.0)


def group_rows(records: list[RunRecord]) -> list[dict[str, Any]]:
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(record.group_key, []).append(record)
    rows = []
    for members in groups.values():
        members = sorted(members, key=lambda r: r.config["seed"])  # seeds and best epochs line up
        first = members[0]
        row = {"dataset": first.config["dataset"], "model": first.config["model"],
               "params": _short_params(first, records), "seeds": [r.config["seed"] for r in members],
               "runs": [str(r.path) for r in members],
               "best_epochs": [r.metrics.get("best_epoch") for r in members]}
        for metric in HEADLINE:
            row[metric] = _mean_std([r.metrics["test"][metric] for r in members if metric in r.metrics["test"]])
            row[f"valid_{metric}"] = _mean_std([r.metrics["valid"][metric] for r in members
                                                if metric in r.metrics["valid"]])
        rows.append(row)
    # validation order: the first row of a dataset is the one a reader may select, without looking at test
    rows.sort(key=lambda r: (r["dataset"], -r["valid_recall@20"][0]))
    return rows


def _pm(value: tuple[float, float], n: int) -> str:
    return f"{value[0]:.4f} ± {value[1]:.4f}" if n > 1 else f"{value[0]:.4f}"


def best_per_dataset(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each dataset's first row of ``group_rows``: its best configuration on validation."""
    best: dict[str, dict[str, Any]] = {}
    for r in rows:
        best.setdefault(r["dataset"], r)
    return best


def gap_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Each configuration's Recall@20 gap to its dataset's first row (the best on validation), on
    validation and on test, also in standard deviations: the gap over the pooled seed std of the
    two rows, sqrt((s_a^2 + s_b^2) / 2). Only rows with several seeds on both sides."""
    lines, first = [], best_per_dataset(rows)
    for r in rows:
        best = first[r["dataset"]]
        if r is best or len(r["seeds"]) < 2 or len(best["seeds"]) < 2:
            continue
        parts = []
        for split, key in (("valid", "valid_recall@20"), ("test", "recall@20")):
            gap = r[key][0] - best[key][0]
            pooled = math.sqrt((r[key][1] ** 2 + best[key][1] ** 2) / 2)
            parts.append(f"{split} {gap:+.4f}" + (f" ({gap / pooled:+.1f} std)" if pooled > 0 else ""))
        lines.append(f"- {r['dataset']}: {r['model']} ({r['params']}) against {best['model']}: {', '.join(parts)}")
    return lines


def _pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display on servers or in CI)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def distinct_labels(paths: list[Path]) -> list[str]:
    """For each run path, its shortest trailing part that no other run path ends with
    (``runs/scale-mgcn/sports`` and ``runs/scale-siger/sports`` -> ``scale-mgcn/sports``, ...)."""
    parts = [Path(p).parts for p in paths]

    def label(i: int) -> str:
        for n in range(1, len(parts[i]) + 1):
            if all(parts[i][-n:] != other[-n:] for j, other in enumerate(parts) if j != i):
                return "/".join(parts[i][-n:])
        return "/".join(parts[i])

    return [label(i) for i in range(len(parts))]


def run_styles(n: int) -> list[dict[str, Any]]:
    """A distinct colour and line style for each of ``n`` runs: tab10 up to 10 runs, tab20 above,
    then dashed and dotted variants (matplotlib's default cycle repeats after 10 colours, so the
    11th run looked like the first)."""
    plt = _pyplot()
    colors = plt.get_cmap("tab10" if n <= 10 else "tab20").colors
    styles = ("-", "--", ":")
    return [{"color": colors[i % len(colors)], "linestyle": styles[i // len(colors) % len(styles)]} for i in range(n)]


def plot_curves(records: list[RunRecord], path: Path) -> None:
    """Training loss and validation Recall@20 per epoch, one line per run."""
    plt = _pyplot()
    fig, (ax_loss, ax_valid) = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = run_styles(len(records))
    for record, label, style in zip(records, distinct_labels([r.path for r in records]), styles):
        epochs = [int(r["epoch"]) for r in record.history]
        if not epochs:
            continue
        ax_loss.plot(epochs, [float(r["loss"]) for r in record.history], label=label, **style)
        points = [(int(r["epoch"]), float(r["valid_recall@20"])) for r in record.history if r.get("valid_recall@20")]
        if points:
            line, = ax_valid.plot(*zip(*points), label=label, **style)
            best = record.metrics.get("best_epoch")
            best_points = [p for p in points if p[0] == best]
            if best_points:
                ax_valid.scatter(*best_points[0], color=line.get_color(), zorder=3)
    ax_loss.set(title="training loss", xlabel="epoch", ylabel="loss (sum of terms)")
    ax_valid.set(title="validation Recall@20 (dot = best epoch)", xlabel="epoch", ylabel="Recall@20")
    for ax in (ax_loss, ax_valid):
        ax.grid(alpha=0.3)
    handles, labels = ax_valid.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.03 * (len(labels) // 3), 1, 1))
    _save(fig, path)


def plot_bars(rows: list[dict[str, Any]], path: Path) -> None:
    """Test Recall@20 per configuration (mean with std error bars over seeds)."""
    plt = _pyplot()
    labels = [f"{r['dataset']}: {r['model']}" + (f"\n{r['params']}" if r["params"] != "defaults" else "") for r in rows]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4.5))
    ax.bar(range(len(rows)), [r["recall@20"][0] for r in rows], yerr=[r["recall@20"][1] for r in rows],
           color="#4C72B0", capsize=4)
    ax.set_xticks(range(len(rows)), labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="test Recall@20", title="test Recall@20 by configuration (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def gate_values(record: RunRecord) -> dict[str, Any]:
    """Every item's purifier gate values per modality (a flat numpy array each) from the run's
    best model, or {} for a model without purifiers."""
    from dgl_synergraph.api import load_run

    model = load_run(record.path, device="cpu").model
    purifiers = getattr(model, "purifiers", None)
    if not purifiers:
        return {}
    with torch.no_grad():
        for m, purifier in purifiers.items():
            purifier(model.item_embedding, model.projections[m]())
    return {m: purifier.last_gate.flatten().numpy() for m, purifier in purifiers.items()}


def plot_gate_histograms(gates: dict[str, dict[str, Any]], path: Path) -> None:
    """One panel per modality: the distribution of every item's gate values, one line per run."""
    plt = _pyplot()
    modalities = sorted({m for run in gates.values() for m in run})
    fig, axes = plt.subplots(1, len(modalities), figsize=(6 * len(modalities), 4), squeeze=False)
    bins = [i / 50 for i in range(51)]
    for ax, m in zip(axes[0], modalities):
        for (label, run), style in zip(gates.items(), run_styles(len(gates))):
            if m in run:
                ax.hist(run[m], bins=bins, histtype="step", density=True, linewidth=1.5, label=label, **style)
        ax.set(title=f"purifier gates, {m} (every item x dimension)", xlabel="gate value", ylabel="density")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1 + 0.04 * (len(labels) // 3), 1, 1))
    _save(fig, path)


def gate_table(gates: dict[str, dict[str, Any]]) -> str:
    rows = []
    for label, run in gates.items():
        for m, values in sorted(run.items()):
            saturated = saturated_share(torch.as_tensor(values))
            rows.append([label, m, f"{values.mean():.3f}", f"{values.std():.3f}", f"{100 * saturated:.1f}%"])
    return text_table(["run", "modality", "gate mean", "gate std", "saturated (< 0.05 or > 0.95)"], rows,
                      markdown=True)


def setting_value(record: RunRecord, key: str) -> Any:
    """A run's value of ``key``: a model hyperparameter or a run setting."""
    params = record.config.get("model_params", {})
    if key in params:
        return params[key]
    if key in record.config:
        return record.config[key]
    raise RunError(f"--vary {key}: run {record.path} has no setting {key!r}")


def sensitivity_points(records: list[RunRecord], key: str, metric: str = "recall@20") -> dict[str, list[tuple]]:
    """Per model: sorted (value, valid mean, test mean, test std, n seeds) over the runs'
    values of ``key``. Runs that share model and value are averaged (seeds)."""
    by_model: dict[str, dict[float, list[RunRecord]]] = {}
    for record in records:
        value = setting_value(record, key)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise RunError(f"--vary {key}: value {value!r} of run {record.path} is not a number")
        by_model.setdefault(record.config["model"], {}).setdefault(value, []).append(record)
    out = {}
    for model, groups in by_model.items():
        rows = []
        for value, members in sorted(groups.items()):
            tests = [m.metrics["test"][metric] for m in members]
            valids = [m.metrics["valid"][metric] for m in members]
            rows.append((value, mean(valids), mean(tests), stdev(tests) if len(tests) > 1 else 0.0, len(tests)))
        out[model] = rows
    return out


def plot_sensitivity(points: dict[str, list[tuple]], key: str, path: Path, metric: str = "recall@20") -> None:
    """Test (solid, std bars) and validation (dashed) ``metric`` against the value of ``key``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for model, rows in points.items():
        values = [r[0] for r in rows]
        line = ax.errorbar(values, [r[2] for r in rows], yerr=[r[3] for r in rows], marker="o", capsize=3,
                           label=f"{model} test")[0]
        ax.plot(values, [r[1] for r in rows], linestyle="--", marker=".", color=line.get_color(),
                label=f"{model} valid")
    ax.set(xlabel=key, ylabel=metric.replace("recall", "Recall").replace("ndcg", "NDCG"),
           title=f"{metric} against {key}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def _save(fig, path: Path) -> None:
    plt = _pyplot()

    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
    plt.close(fig)


def build_report(paths: list[str | Path], out: str | Path, title: str = "SynerGraph run report",
                 vary: str | None = None, gates: bool = False) -> Path:
    """Write ``out`` (Markdown) plus ``<stem>_curves.png`` and ``<stem>_recall20.png`` beside it;
    with ``vary``, also ``<stem>_<vary>.png``: Recall@20 against that setting; with ``gates``,
    also ``<stem>_gates.png``: the purifier gate histograms of each run's best model."""
    records = find_runs(paths)
    sensitivity = sensitivity_points(records, vary) if vary else None
    rows = group_rows(records)
    out = Path(out)
    curves = out.with_name(f"{out.stem}_curves.png")
    bars = out.with_name(f"{out.stem}_recall20.png")
    plot_curves(records, curves)
    plot_bars(rows, bars)
    table = text_table(
        ["dataset", "model", "hyperparameters", "seeds", "best epoch", "valid R@20", *[f"test {m}" for m in HEADLINE]],
        [[r["dataset"], r["model"], r["params"], ",".join(map(str, r["seeds"])),
          ",".join(map(str, r["best_epochs"])), _pm(r["valid_recall@20"], len(r["seeds"])),
          *[_pm(r[m], len(r["seeds"])) for m in HEADLINE]] for r in rows],
        markdown=True)
    lines = [f"# {title}", "",
             f"{len(records)} runs in {len(rows)} configurations. Test metrics at each run's best validation "
             "epoch; mean ± std over seeds where a configuration has several. Sorted by validation Recall@20.", ""]
    for dataset, r in best_per_dataset(rows).items():
        lines.append(f"- **{dataset}**: best on validation is {r['model']} ({r['params']}): valid Recall@20 "
                     f"{_pm(r['valid_recall@20'], len(r['seeds']))}, test {_pm(r['recall@20'], len(r['seeds']))}.")
    lines += ["", table, ""]
    gaps = gap_lines(rows)
    if gaps:
        lines += ["Recall@20 gap to the first row of each dataset, in pooled seed standard deviations "
                  "where both rows have several seeds:", "", *gaps, ""]
    if sensitivity is not None:
        plot_path = out.with_name(f"{out.stem}_{vary}.png")
        plot_sensitivity(sensitivity, vary, plot_path)
        lines += [text_table([vary, "model", "seeds", "valid R@20", "test R@20"],
                             [[r[0], model, r[4], r[1], _pm((r[2], r[3]), r[4])]
                              for model, rows in sensitivity.items() for r in rows], markdown=True),
                  "", f"![Recall@20 against {vary}]({plot_path.name})", ""]
    if gates:
        values = {label: gate_values(record)
                  for record, label in zip(records, distinct_labels([r.path for r in records]))}
        values = {label: run for label, run in values.items() if run}
        if values:
            gates_path = out.with_name(f"{out.stem}_gates.png")
            plot_gate_histograms(values, gates_path)
            lines += ["Purifier gates of each run's best model, every item and dimension:", "", gate_table(values), "",
                      f"![purifier gate histograms]({gates_path.name})", ""]
    lines += [f"![test Recall@20]({bars.name})", "", f"![training curves]({curves.name})", "",
              "Runs:", ""] + [f"- `{record.path}`" for record in records] + [""]
    atomic_write(out, lambda tmp: tmp.write_text("\n".join(lines)))
    return out
