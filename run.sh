#!/usr/bin/env bash
# The main job: set up (first run only), then run terminald.
#   ./run.sh            terminald serve, embedded defaults (state in ./var)
#   ./run.sh demo       the whole outage day with every simulator
#   ./run.sh demo --protocol nhsa   the same day against the national platform's simulator
#   ./run.sh ARGS...    any terminald command
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
[[ $# -eq 0 ]] && set -- serve
exec .venv/bin/terminald "$@"
