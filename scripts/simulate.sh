#!/usr/bin/env bash
# The main job: a federated simulation on the built-in synthetic cohort, ending in a report.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh
source scripts/env.sh
exec .venv/bin/aclecg simulate "$@"
