#!/usr/bin/env bash
# Set up everything terminald needs on a Debian/Ubuntu machine, idempotently:
#   scripts/bootstrap.sh          runtime: system packages + .venv with terminald
#   scripts/bootstrap.sh --test   also what the test suite uses (fault injection,
#                                 nftables, chromium for the status-page test)
# A second run only checks stamps and returns in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

# pyscard builds from source on Linux (swig + libpcsclite-dev); pcscd with the
# vpcd driver is the reader stack the emulator plugs into; a CJK font renders
# receipt previews.
RUNTIME_PKGS=(pcscd vsmartcard-vpcd libpcsclite-dev swig gcc python3-venv python3-dev
              fonts-wqy-microhei)
# prometheus for promtool: /metrics is checked with the linter Prometheus itself uses.
# postgresql: the mirror's tests start a primary and a synchronous standby of their own.
TEST_PKGS=(fiu-utils socat nftables iproute2 util-linux chromium procps wrk strace systemd prometheus curl jq
           postgresql)

missing=()
need() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done; }
if command -v dpkg-query >/dev/null; then
  need "${RUNTIME_PKGS[@]}"
  ((want_test)) && need "${TEST_PKGS[@]}"
fi
if ((${#missing[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages: ${missing[*]}" >&2
    echo "bootstrap: run as root:  apt-get install -y ${missing[*]}" >&2
    [[ $want_test -eq 1 ]] || exit 1
  fi
fi

PY=${PYTHON:-python3}
extra=""; kind=runtime
((want_test)) && { extra="[test]"; kind=test; }
hash=$( (cat pyproject.toml; "$PY" -c 'import sys; print(sys.version)') | sha256sum | cut -d' ' -f1)
stampfile=.venv/.bootstrap-stamp
# A test install also satisfies a runtime run, not the other way round.
if [[ ! -x .venv/bin/python ]] || ! grep -qxE "(test|$kind):$hash" "$stampfile" 2>/dev/null; then
  [[ -x .venv/bin/python ]] || "$PY" -m venv .venv
  echo "bootstrap: installing Python packages into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".$extra"
  echo "$kind:$hash" > "$stampfile"
fi
# Editable installs keep working after the tree moves only if the path is right.
.venv/bin/python -c 'import terminald' 2>/dev/null || .venv/bin/python -m pip install -q --no-deps -e "$ROOT"
