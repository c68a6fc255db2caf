"""The benchmark suite: per dataset and model, data load, kNN graph build per modality, one
training epoch, one full-ranking evaluation and peak memory, as medians of repetitions.

    .venv/bin/python -m benchmarks.run --quick                   # Baby, every model, 1 repetition
    .venv/bin/python -m benchmarks.run --datasets baby sports clothing --models lightgcn mgcn --repeat 3
    .venv/bin/python -m benchmarks.run --datasets sample --models lightgcn --precision bf16
    .venv/bin/python -m benchmarks.run --set lightgcn.n_layers=2     # MODEL.key=value: that model only

The timed epoch is the trainer's own ``train_epoch`` (per-epoch hook, sampling, every batch and
optimiser step) with the trainer's optimiser, and the evaluation is the evaluator the trainer
uses. Each (dataset, model) runs in a child process, so its peak memory is its own. Writes
``<out>/benchmark.json`` and ``<out>/benchmark.md`` (machine, versions, threads and precision
recorded; without `--precision` each model computes in its own default precision, shown per row)
and prints the Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import SHARED_DATA

MODELS = ["lightgcn", "freedom", "mgcn", "synergraph", "siger"]
EMBEDDED = Path(__file__).resolve().parents[1] / "datasets"


def dataset_folder(name: str, data_dir: Path) -> Path | None:
    for root in (data_dir, EMBEDDED):
        if (root / name / f"{name}.inter").is_file():
            return root / name
    return None


def measure_one(dataset: str, folder: Path, model: str, repeat: int, precision: str | None, settings: list[str]) -> dict:
    """Runs in the child process: every figure for one (dataset, model)."""
    import torch

    from dgl_synergraph.config import parse_set_values
    from dgl_synergraph.data import load_dataset
    from dgl_synergraph.evaluation import split_evaluator
    from dgl_synergraph.graphs.knn import cached_knn_graph, knn_search
    from dgl_synergraph.training import build_config, train_epoch
    from dgl_synergraph.training.fused_adam import available
    from dgl_synergraph.training.sampler import BPRBatches
    from dgl_synergraph.training.trainer import model_for, optimizer_for, tune_allocator
    from dgl_synergraph.utils import resolve_precision

    given = {"dataset": dataset, "model": model, "device": "cpu"} | ({"precision": precision} if precision else {})
    config = build_config(given, parse_set_values(settings))  # without --precision: the model's default
    precision = resolve_precision(config.precision, torch.device("cpu"))
    start = time.perf_counter()
    data = load_dataset(dataset, path=folder)
    load_seconds = time.perf_counter() - start
    tune_allocator(data)  # as the trainer does
    params = config.model_params
    knn_seconds = {}
    if "knn_k" in params:
        # Built into the fresh cache with the parameters the model's recipe uses (FREEDOM: binary;
        # SIGER's add_then_normalise: unnormalised), so building the model below reuses them.
        weighting = params.get("knn_weighting", "binary")
        normalise = params.get("infusion", "mix") == "mix"
        for modality in data.modalities:
            start = time.perf_counter()
            with knn_search("auto" if precision == "bf16" else "fp32"):  # as model_for builds them
                cached_knn_graph(data.features[modality], params["knn_k"], weighting,
                                 params.get("knn_self_loop", True), normalise=normalise)
            knn_seconds[modality] = time.perf_counter() - start
    device = torch.device("cpu")
    start = time.perf_counter()
    model_obj = model_for(config, data, device)
    build_seconds = time.perf_counter() - start
    optimizer = optimizer_for(model_obj, config)
    batches = BPRBatches(data.train, data.n_items, torch.Generator().manual_seed(config.seed))
    evaluator = split_evaluator(data, "valid", config.ks, config.eval_batch_size, device)
    epochs, evals = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        train_epoch(model_obj, optimizer, batches, config.batch_size, device)
        epochs.append(time.perf_counter() - start)
        model_obj.eval()
        start = time.perf_counter()
        evaluator.evaluate(model_obj.scorer())
        evals.append(time.perf_counter() - start)
    return {
        "dataset": dataset, "model": model, "users": data.n_users, "items": data.n_items,
        "train_pairs": len(data.train), "settings": settings, "precision": precision,
        "adam": "fused" if available() else "torch",
        "load_s": load_seconds, "knn_s": knn_seconds, "model_build_s": build_seconds,
        "epoch_s": statistics.median(epochs), "eval_s": statistics.median(evals), "repeats": repeat,
        # every repetition, in order: the first carries the one-off costs (first touch of buffers)
        "epoch_s_each": epochs, "eval_s_each": evals,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2,
    }


def run_child(dataset: str, model: str, args) -> dict:
    """One (dataset, model) in its own process with its own empty graph cache, so the kNN build
    is timed for every model and peak memory is the pair's own."""
    command = [sys.executable, "-m", "benchmarks.run", "--one", dataset, model, "--repeat", str(args.repeat),
               "--threads", str(args.threads), "--data-dir", str(args.data_dir)]
    command += ["--precision", args.precision] if args.precision else []
    command += [f"--set={s}" for s in settings_for(model, args.settings)]
    print(f"{dataset} / {model} ...", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="synergraph-bench-") as cache:
        env = {**os.environ, "SYNERGRAPH_CACHE": cache, "OMP_NUM_THREADS": str(args.threads), "DGLBACKEND": "pytorch"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        error = (done.stderr.strip().splitlines() or ["failed"])[-1]
        return {"dataset": dataset, "model": model, "error": error[:200]}
    return json.loads(line[len("RESULT "):])


def settings_for(model: str, settings: list[str]) -> list[str]:
    """``--set`` values for ``model``: unprefixed ones, and ``model.key=value`` without the prefix."""
    out = []
    for setting in settings:
        key = setting.split("=", 1)[0]
        owner, dot, rest = key.partition(".")
        if not dot:
            out.append(setting)
        elif owner == model:
            out.append(setting[len(owner) + 1:])
    return out


def environment(threads: int, precision: str) -> dict:
    import torch

    flags = ""
    if Path("/proc/cpuinfo").is_file():
        line = next((ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("flags")), "")
        flags = " ".join(f for f in ("avx512f", "avx512_bf16", "amx_bf16") if f in line.split())
    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
            "processor": platform.processor(), "cpus": os.cpu_count(), "cpu_flags": flags, "threads": threads,
            "precision": precision or "each model's default", "python": platform.python_version(), "torch": torch.__version__,
            "command": "python -m benchmarks.run " + " ".join(sys.argv[1:])}


def markdown(results: list[dict], env: dict) -> str:
    lines = [f"Benchmark, {env['date'][:10]}: {env['cpus']} CPUs ({env['cpu_flags'] or 'no AVX-512'}), "
             f"{env['threads']} torch threads, precision {env['precision']}, torch {env['torch']}. "
             f"Command: `{env['command']}`. Medians of the repetitions shown.", "",
             "| dataset | model | precision | users | items | load s | kNN s (per modality) | train epoch s | eval s | "
             "epoch + eval s | peak RSS GB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['dataset']} | {r['model']} | – | – | – | – | – | – | – | – | {r['error']} |")
            continue
        knn = ", ".join(f"{m} {s:.2f}" for m, s in r["knn_s"].items()) or "–"
        lines.append(f"| {r['dataset']} | {r['model']} | {r['precision']} | {r['users']:,} | {r['items']:,} | {r['load_s']:.2f} | {knn} | "
                     f"{r['epoch_s']:.2f} | {r['eval_s']:.2f} | {r['epoch_s'] + r['eval_s']:.2f} | "
                     f"{r['peak_rss_gb']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["baby", "sports", "clothing", "elec"])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--quick", action="store_true", help="Baby only (unless --datasets is given), 1 repetition")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="for every model (default: each model's own, 'synergraph models')")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="[MODEL.]KEY=VALUE",
                        help="a setting or hyperparameter, as in 'synergraph train --set'; with a MODEL. prefix "
                             "for that model only")
    parser.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--one", nargs=2, metavar=("DATASET", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
        if "--datasets" not in sys.argv:
            args.datasets = ["baby"]

    if args.one:  # child process
        import torch

        torch.set_num_threads(args.threads)
        dataset, model = args.one
        result = measure_one(dataset, dataset_folder(dataset, args.data_dir), model, args.repeat, args.precision,
                             args.settings)
        print("RESULT " + json.dumps(result))
        return

    results = []
    for dataset in args.datasets:
        folder = dataset_folder(dataset, args.data_dir)
        for model in args.models:
            if folder is None:
                results.append({"dataset": dataset, "model": model, "error": f"not found under {args.data_dir}"})
                continue
            results.append(run_child(dataset, model, args))
    env = environment(args.threads, args.precision)
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, env)
    for name, text in (("benchmark.json", json.dumps({"environment": env, "results": results}, indent=2) + "\n"),
                       ("benchmark.md", table)):
        tmp = args.out / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(args.out / name)
    print(table)


if __name__ == "__main__":
    main()
