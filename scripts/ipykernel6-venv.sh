#!/usr/bin/env bash
# Creates .venv-ipykernel6: sandbox with ipykernel 6, whose output routing differs from 7's.
# The notebook tests start a kernel from it. Prints the venv's python path. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-ipykernel6
if [ ! -f "$VENV/.installed" ] || [ pyproject.toml -nt "$VENV/.installed" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -U pip >/dev/null 2>&1
    "$VENV/bin/python" -m pip install -q "ipykernel>=6.29,<7" -e ".[notebook]" >&2
    touch "$VENV/.installed"
fi
echo "$PWD/$VENV/bin/python"
