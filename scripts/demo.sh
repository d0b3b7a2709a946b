#!/usr/bin/env bash
# Install, then run the demo greedy expert search end to end (Ray Tune + MLflow), printing the ranked table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export OMP_WAIT_POLICY=PASSIVE
.venv/bin/eaglesearch validate search_spaces/demo_greedy.yaml
.venv/bin/eaglesearch run search_spaces/demo_greedy.yaml "$@"
