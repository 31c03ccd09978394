#!/usr/bin/env bash
# The tests: set up (first run only), lint, type-check, then the whole suite.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh --test
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
