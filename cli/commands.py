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
