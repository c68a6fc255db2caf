"""Subcommands of ``synergraph``."""

from __future__ import annotations

import json

import click

from cli.main import _setup_logging, app
from dgl_synergraph.config import build_config, load_yaml, parse_set_values
from dgl_synergraph.data.loader import list_datasets
from dgl_synergraph.evaluation.evaluator import split_evaluator
from dgl_synergraph.models.registry import MODELS
from dgl_synergraph.reports.tables import metrics_table, text_table
from dgl_synergraph.training.runs import load_run
from dgl_synergraph.training.trainer import train as train_run

DEVICE = click.Choice(["auto", "cpu", "cuda"])


@app.command()
@click.option("--dataset", help="Dataset name: <data-dir>/NAME/NAME.inter (default: the embedded 'sample').")
@click.option("--model", help=f"Model to train: {', '.join(sorted(MODELS))} (default: lightgcn).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of datasets (default: $SYNERGRAPH_DATA, else ./data).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<dataset>-<model>-<timestamp>).")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs (default 1000, early stopping on validation).")
@click.option("--seed", type=int, help="The one seed for initialisation, sampling and shuffling (default 999).")
@click.option("--device", type=DEVICE, help="auto (CUDA when available), cpu or cuda.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a setting or model hyperparameter; repeatable.")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue an interrupted run directory with its saved config.")
@click.option("--quiet", is_flag=True, help="No progress bar or log lines; print only the final table.")
def train(dataset, model, data_dir, out, epochs, seed, device, config_file, settings, resume, quiet):
    """Train a model, select its best epoch on validation, report test metrics."""
    _setup_logging(quiet)
    if resume:
        if any(v is not None for v in (dataset, model, data_dir, out, seed, device, config_file)) or settings:
            raise click.UsageError("--resume uses the run's saved config; only --epochs may be given with it")
        result = train_run(build_config({"epochs": epochs}) if epochs else None, resume=resume, progress=not quiet)
    else:
        layers = [load_yaml(config_file)] if config_file else []
        layers.append(parse_set_values(list(settings)))
        layers.append({"dataset": dataset, "model": model, "epochs": epochs, "seed": seed, "device": device})
        if data_dir is not None:
            layers.append({"data_dir": data_dir})
        config = build_config(*layers)
        result = train_run(config, out=out, progress=not quiet)
    metrics = result.metrics
    click.echo(f"{metrics['model']} on {metrics['dataset']}: best epoch {metrics['best_epoch']} "
               f"(of {metrics['epochs_run']}); run directory {result.run_dir}")
    click.echo(metrics_table({"valid": metrics["valid"], "test": metrics["test"]}))


@app.command(name="eval")
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A run directory written by 'synergraph train'.")
@click.option("--k", "ks", multiple=True, type=click.IntRange(min=1), help="Cut-off K; repeatable (default 10 20 50).")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--mask-valid", is_flag=True, help="Also mask the user's validation items when testing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Look for the run's dataset here instead of its recorded path.")
def evaluate(run_dir, ks, split, mask_valid, as_json, device, data_dir):
    """Evaluate a run's best checkpoint with full ranking."""
    _setup_logging(quiet=True)
    run = load_run(run_dir, device=device, data_dir=data_dir)
    ks = sorted(set(ks)) or [10, 20, 50]
    if max(ks) > run.dataset.n_items:
        raise click.BadParameter(f"{max(ks)} exceeds the number of items ({run.dataset.n_items})", param_hint="'--k'")
    evaluator = split_evaluator(run.dataset, split, ks, run.config.eval_batch_size, run.device,
                                mask_valid=mask_valid or run.config.mask_valid_in_test)
    metrics = evaluator.evaluate(run.model.scorer())
    if as_json:
        click.echo(json.dumps(metrics))
    else:
        click.echo(f"{run.config.model} on {run.dataset.name} ({evaluator.n_users} {split} users)")
        click.echo(metrics_table({split: metrics}, ks))


@app.command()
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of datasets (default: $SYNERGRAPH_DATA, else ./data).")
@click.option("--json", "as_json", is_flag=True, help="Print the listing as JSON.")
def datasets(data_dir, as_json):
    """List the datasets found in the data folder and the embedded ones."""
    found = list_datasets(data_dir)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        click.echo("no datasets found")
        return
    rows = []
    for d in found:
        if "error" in d:
            rows.append([d["name"], "-", "-", "-", "-", f"invalid: {d['error']}"])
        else:
            rows.append([d["name"], d["users"], d["items"], d["interactions"],
                         f"{d['train']}/{d['valid']}/{d['test']}", ",".join(d["modalities"]) or "-"])
    click.echo(text_table(["dataset", "users", "items", "interactions", "train/valid/test", "modalities"], rows))


@app.command()
def models():
    """List the registered models and their hyperparameters."""
    rows = [[e.name, e.description, ", ".join(f"{k}={v}" for k, v in e.defaults.items()) or "-"]
            for e in MODELS.values()]
    click.echo(text_table(["model", "description", "hyperparameters (defaults)"], rows))


@app.command()
@click.option("--run", "run_dir", required=True, type=click.Path(), help="A run directory written by 'synergraph train'.")
@click.option("--user", "users", multiple=True, help="User id (raw id when the dataset has u_id_mapping.csv); repeatable.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True, help="Items per user.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per user.")
@click.option("--internal-ids", is_flag=True, help="Read and print internal ids even when raw-id mappings exist.")
@click.option("--include-seen", is_flag=True, help="Allow items the user interacted with in training.")
@click.option("--fallback", type=click.Choice(["error", "popular"]), default="error", show_default=True,
              help="Unknown users: fail, or recommend the most popular training items.")
@click.option("--all", "all_users", is_flag=True, help="Recommend for every user; needs --out FILE.parquet.")
@click.option("--out", type=click.Path(dir_okay=False), help="Parquet file for --all (columns user, rank, item, score).")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Look for the run's dataset here instead of its recorded path.")
def recommend(run_dir, users, k, as_json, internal_ids, include_seen, fallback, all_users, out, device, data_dir):
    """Top-K recommendations from a trained run, for some users or (--all) for everyone."""
    from dgl_synergraph.api import load_run as load_trained

    if all_users and not out:
        raise click.UsageError("--all needs --out FILE.parquet")
    if not all_users and not users:
        raise click.UsageError("give at least one --user ID, or --all --out FILE.parquet")
    if out and not all_users:
        raise click.UsageError("--out is only used with --all")
    _setup_logging(quiet=True)
    run = load_trained(run_dir, device=device, data_dir=data_dir)
    ids = "internal" if internal_ids else "auto"
    if all_users:
        rows = run.export_all(out, k=k, batch_size=run.config.eval_batch_size, exclude_seen=not include_seen)
        click.echo(f"wrote {rows} rows ({run.dataset.n_users} users x {k}) to {out}")
        return
    results = run.recommend(list(users), k=k, exclude_seen=not include_seen, ids=ids, fallback=fallback)
    for rec in results:
        if as_json:
            click.echo(json.dumps(rec.as_dict(), default=str))
        else:
            note = " (unknown user: most popular items)" if rec.fallback else ""
            click.echo(f"user {rec.user}{note}")
            click.echo(text_table(["rank", "item", "score"],
                                  [[r + 1, item, score] for r, (item, score) in enumerate(zip(rec.items, rec.scores))]))


@app.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="report.md", show_default=True,
              help="Markdown page; the PNG plots are written next to it.")
@click.option("--title", default="SynerGraph run report", show_default=True)
def report(runs, out, title):
    """Compare runs: metrics table (mean ± std over seeds), training curves, Markdown page."""
    from dgl_synergraph.reports.report import build_report

    path = build_report(list(runs), out, title=title)
    click.echo(path.read_text().split("\n\n![")[0])
    click.echo(f"\nwrote {path} and its plots")


@app.command()
@click.option("--dataset", help="Dataset name (default: the embedded 'sample').")
@click.option("--model", required=True, help=f"Model: {', '.join(sorted(MODELS))}.")
@click.option("--grid", "grids", multiple=True, required=True, metavar="KEY=V1,V2",
              help="A setting and its values; repeatable (the grid is their product).")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True,
              help="Seeds for the selected configuration (the base seed, +1, ...).")
@click.option("--seed", type=int, help="Base seed (default 999).")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs per run.")
@click.option("--data-dir", type=click.Path(file_okay=False))
@click.option("--out", type=click.Path(file_okay=False), help="Sweep folder (default: runs/sweep-<dataset>-<model>).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of base settings.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Base setting; repeatable.")
@click.option("--device", type=DEVICE)
@click.option("--quiet", is_flag=True)
def sweep(dataset, model, grids, seeds, seed, epochs, data_dir, out, config_file, settings, device, quiet):
    """Grid search selected on validation Recall@20, then the winner on several seeds. Rerun the
    same command to resume an interrupted sweep."""
    from dgl_synergraph.training.sweep import parse_grid, run_sweep

    _setup_logging(quiet)
    base = load_yaml(config_file) if config_file else {}
    base.update(parse_set_values(list(settings)))
    base.update({k: v for k, v in {"dataset": dataset, "model": model, "seed": seed, "epochs": epochs,
                                   "device": device, "data_dir": data_dir}.items() if v is not None})
    base.setdefault("dataset", "sample")
    grid = parse_grid(list(grids))
    folder = out or f"runs/sweep-{base['dataset']}-{model}"
    summary = run_sweep(base, grid, seeds, folder, progress=not quiet)
    rows = [[json.dumps(c["settings"]), c["valid"]["recall@20"], c["test"]["recall@20"]] for c in summary["cells"]]
    click.echo(text_table(["cell", "valid recall@20", "test recall@20"], rows))
    click.echo(f"selected on validation: {json.dumps(summary['selected']['settings'])}")
    stats = summary["test_mean_std"]
    click.echo(" ".join(f"{k}={stats[k][0]:.4f}±{stats[k][1]:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
                        if k in stats) + f" over {seeds} seeds; {folder}/sweep.json, {folder}/report.md")
