#!/usr/bin/env bash
# Set up the environment (scripts/setup.sh) and run the whole test suite. "No tests collected"
# (pytest exit 5) is a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export DGLBACKEND=pytorch
.venv/bin/python -m pytest -q "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "test.sh: no tests were collected" >&2
  exit 1
fi
exit "$status"
