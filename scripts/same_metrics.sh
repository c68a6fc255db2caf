#!/usr/bin/env bash
# Behaviour check for refactors: train every registered model on the embedded sample for a few
# epochs with one seed, writing OUT/<model>/metrics.json; with BEFORE, compare each metrics.json
# with BEFORE/<model>/metrics.json and fail unless all are identical.
# Usage: bash scripts/same_metrics.sh OUT [BEFORE] [EPOCHS]
#   e.g. at the old commit (a git worktree): PYTHONPATH=$PWD bash /path/to/same_metrics.sh /tmp/before
#        then here:                          bash scripts/same_metrics.sh /tmp/after /tmp/before
set -euo pipefail
out="$1"; before="${2:-}"; epochs="${3:-3}"
python="${PYTHON:-$(dirname "$0")/../.venv/bin/python}"
export DGLBACKEND=pytorch SYNERGRAPH_CACHE="${SYNERGRAPH_CACHE:-$out/cache}" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
for model in mostpop bpr lightgcn freedom mgcn synergraph siger; do
  "$python" -c 'import sys; from cli.main import main; main(sys.argv[1:])' \
    train --model "$model" --epochs "$epochs" --seed 999 --device cpu --out "$out/$model" --quiet > "$out.$model.log" 2>&1
done
"$python" - "$out" "$before" <<'PY'
import json, sys
from pathlib import Path
out, before = Path(sys.argv[1]), sys.argv[2]
same = True
for run in sorted(p.parent for p in out.glob("*/metrics.json")):
    metrics = json.loads((run / "metrics.json").read_text())
    line = f"{run.name:11s} test recall@20 {metrics['test']['recall@20']:.6f}"
    if before:
        old = json.loads((Path(before) / run.name / "metrics.json").read_text())
        same &= old == metrics
        line += "  identical to before" if old == metrics else "  DIFFERS from before"
    print(line)
sys.exit(0 if same else 1)
PY
