"""Seconds per epoch of MMRec's own code and of ours on the same data, one after the other.

    python -m benchmarks.mmrec_side_by_side --mmrec /path/to/MMRec/src [--dataset baby]
        [--models LightGCN FREEDOM MGCN] [--epochs 3] [--data-dir ../shared/data] [--precision bf16]

MMRec (github.com/enoche/MMRec; not a dependency: point ``--mmrec`` at a checkout's ``src``) is
started through its own ``quick_start`` on the CPU with one configuration of each model's grid,
in a scratch folder (it writes logs there); its per-epoch "training [time: ...]" and "evaluating
[time: ...]" lines are read back. Ours is ``synergraph train`` with the same model, epochs and
seed; its ``history.csv`` gives train and valid-evaluation seconds per epoch. Both use this
process's torch thread count. The table shows the median epoch of each, and the ratio.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

#: MMRec model -> (one cell of its grid, the same model and settings here). Each MMRec grid is
#: cut to the cell our Baby table uses (docs/results.md).
MODELS = {
    "LightGCN": ({"n_layers": [2], "reg_weight": [1e-4]}, ["--model", "lightgcn", "--set", "n_layers=2"]),
    "FREEDOM": ({"dropout": [0.8], "reg_weight": [1e-4]}, ["--model", "freedom"]),
    "MGCN": ({"cl_loss": [0.01]}, ["--model", "mgcn"]),
}
# MMRec imports torchvision and lmdb at module level for its end-to-end raw-image path, which
# precomputed features never take: where they are missing, empty stand-in modules are put on its
# path (and torch_scatter's scatter_add). Two removed APIs it calls get their old meaning back:
# SciPy 1.12's dok_matrix._update (a dict update) and NumPy 1.24's np.float (float). Its MGCN
# calls .cuda() whatever the device: on a machine without CUDA that is the identity here. It
# writes graph caches into the dataset's folder, so it reads the data through a scratch folder
# of links.
_STAND_IN_FILES = {"torchvision/__init__.py": "", "torchvision/transforms/__init__.py": "",
                   "torchvision/transforms/functional.py": "pad = resize = None\n", "lmdb.py": "",
                   # MGCN's kNN graph normalisation (at build, not timed) takes torch_scatter's scatter_add
                   "torch_scatter.py": ("import torch\n\ndef scatter_add(src, index, dim=0, dim_size=None):\n"
                                        "    shape = list(src.shape)\n"
                                        "    shape[dim] = dim_size if dim_size is not None else int(index.max()) + 1\n"
                                        "    return torch.zeros(shape, dtype=src.dtype).index_add_(dim, index, src)\n")}
_PRELUDE = """
import sys, importlib.util
sys.path.insert(0, '.')
sys.path.append('stand-ins')  # after the installed packages: used only where one is missing
import torch
if not torch.cuda.is_available():  # MMRec's MGCN moves its kNN graphs with a hard-coded .cuda()
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
import scipy.sparse
if not hasattr(scipy.sparse.dok_matrix, "_update"):
    scipy.sparse.dok_matrix._update = lambda self, entries: self._dict.update(entries)
import numpy
numpy.float = float
"""
_TRAIN = re.compile(r"epoch (\d+) training \[time: ([\d.]+)s")
_EVAL = re.compile(r"epoch (\d+) evaluating \[time: ([\d.]+)s")


def run_mmrec(src: Path, model: str, dataset: str, data_dir: Path, epochs: int, scratch: Path) -> tuple[list, list]:
    """(train seconds, valid-evaluation seconds) per epoch of MMRec's quick_start."""
    work = scratch / f"mmrec-{model}"
    shutil.copytree(src, work)  # it reads configs/ from, and writes log/ into, its working folder
    for name, text in _STAND_IN_FILES.items():
        (work / "stand-ins" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "stand-ins" / name).write_text(text)
    links = work / "data" / dataset
    links.mkdir(parents=True)
    for path in (data_dir / dataset).iterdir():
        (links / path.name).symlink_to(path.resolve())
    grid, _ = MODELS[model]
    overrides = {"use_gpu": False, "gpu_id": 0, "epochs": epochs, "seed": [999], "data_path": str(work / "data") + "/",
                 "hyper_parameters": list(grid), **grid}
    script = _PRELUDE + ("from utils.quick_start import quick_start; "
                           f"quick_start(model={model!r}, dataset={dataset!r}, config_dict={overrides!r}, "
                           "save_model=False)")
    done = subprocess.run([sys.executable, "-c", script], cwd=work, capture_output=True, text=True)
    log = done.stdout + done.stderr
    if done.returncode != 0:
        raise SystemExit(f"Error: MMRec {model} failed (exit {done.returncode}):\n{log[-2000:]}")
    return [float(t) for _, t in _TRAIN.findall(log)], [float(t) for _, t in _EVAL.findall(log)]


def run_ours(model: str, dataset: str, data_dir: Path, epochs: int, scratch: Path,
             precision: str | None = None) -> tuple[list, list, str]:
    """(train seconds, valid-evaluation seconds) per epoch of ``synergraph train``, and the
    precision it computed in (``precision``, or the model's default)."""
    out = scratch / f"ours-{model}"
    _, ours = MODELS[model]
    done = subprocess.run([sys.executable, "-m", "cli.main", "train", "--dataset", dataset, "--data-dir", str(data_dir),
                           *ours, "--epochs", str(epochs), "--seed", "999", "--out", str(out), "--quiet",
                           *(["--precision", precision] if precision else [])],
                          cwd=ROOT, capture_output=True, text=True, env={**os.environ, "DGLBACKEND": "pytorch"})
    if done.returncode != 0:
        raise SystemExit(f"Error: synergraph train {model} failed:\n{done.stderr[-2000:]}")
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    precision = json.loads((out / "config.json").read_text())["runtime"]["precision"]
    return [float(r["train_seconds"]) for r in rows], [float(r["eval_seconds"]) for r in rows], precision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mmrec", type=Path, required=True, help="MMRec's src folder (holds main.py and configs/)")
    parser.add_argument("--dataset", default="baby")
    parser.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                        help="our runs' precision (default: each model's own)")
    args = parser.parse_args()
    if not (args.mmrec / "utils" / "quick_start.py").is_file():
        parser.error(f"--mmrec {args.mmrec}: not MMRec's src folder (no utils/quick_start.py)")
    if not (args.data_dir / args.dataset / f"{args.dataset}.inter").is_file():
        parser.error(f"--data-dir {args.data_dir}: no {args.dataset}/{args.dataset}.inter")
    rows = []
    with tempfile.TemporaryDirectory(prefix="side-by-side-") as scratch:
        for model in args.models:  # one after the other, never side by side in time
            theirs = run_mmrec(args.mmrec, model, args.dataset, args.data_dir.resolve(), args.epochs, Path(scratch))
            ours = run_ours(model, args.dataset, args.data_dir.resolve(), args.epochs, Path(scratch), args.precision)
            rows.append({"model": model, "mmrec_train": statistics.median(theirs[0]),
                         "mmrec_eval": statistics.median(theirs[1]), "ours_train": statistics.median(ours[0]),
                         "ours_eval": statistics.median(ours[1]), "ours_precision": ours[2],
                         "mmrec_epochs": theirs, "ours_epochs": ours[:2]})
    print(f"{args.dataset}, {args.epochs} epochs each, median seconds per epoch (training + valid evaluation); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | MMRec | ours | our precision | ratio |")
    print("|---|---|---|---|---|")
    for row in rows:
        mmrec, ours = row["mmrec_train"] + row["mmrec_eval"], row["ours_train"] + row["ours_eval"]
        print(f"| {row['model']} | {row['mmrec_train']:.2f} + {row['mmrec_eval']:.2f} | "
              f"{row['ours_train']:.2f} + {row['ours_eval']:.2f} | {row['ours_precision']} | {mmrec / ours:.2f}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
