#!/usr/bin/env bash
# Creates .venv-nameko with Nameko 2.14.1, the peer that bench/ and the wire-compatibility tests
# compare against. Prints the venv's python path. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-nameko
if [ ! -x "$VENV/bin/nameko" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q -U pip >/dev/null 2>&1
    "$VENV/bin/python" -m pip install -q "nameko==2.14.1" "werkzeug<3" "requests" >&2
fi
echo "$PWD/$VENV/bin/python"
