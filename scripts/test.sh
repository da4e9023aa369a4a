#!/usr/bin/env bash
# The test suite: lint, types, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
source scripts/env.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
