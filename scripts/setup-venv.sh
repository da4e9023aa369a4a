#!/usr/bin/env bash
# Create .venv and install the project (idempotent; reinstalls only when pyproject.toml changed).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  # torch first, pinned: an unpinned torch pulls gigabytes of CUDA packages.
  .venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
  .venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev,gan]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
