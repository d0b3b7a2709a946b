#!/usr/bin/env bash
# Install, then run the whole test suite (slow end-to-end tests included; gpu tests skip without CUDA).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export OMP_WAIT_POLICY=PASSIVE
exec .venv/bin/python -m pytest "$@"
