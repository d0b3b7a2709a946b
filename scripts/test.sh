#!/usr/bin/env bash
# Install, then run the whole test suite (slow end-to-end tests included; gpu tests skip without CUDA).
# Tests run in parallel on up to 4 cores (pytest-xdist; each file's tests stay on one worker so a module's fixtures
# start once; the longest files start first, tests/conftest.py); pass `-n 0` to run them in this process (a debugger,
# pdb), or `-n N` for N workers.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export OMP_WAIT_POLICY=PASSIVE
# bootstrap.sh byte-compiles only what a search imports (scripts/warm_bytecode.py): anything else the tests import
# compiles once, on its first import, for every later process.
unset PYTHONDONTWRITEBYTECODE
parallel=(-n "$(( $(nproc) < 4 ? $(nproc) : 4 ))" --dist loadfile --no-loadscope-reorder)
for arg in "$@"; do
    case "$arg" in -n|-n*|--numprocesses*|no:xdist) parallel=() ;; esac
done
exec .venv/bin/python -m pytest "${parallel[@]}" "$@"
