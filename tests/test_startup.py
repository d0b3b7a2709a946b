"""The command line starts light: ``--help`` and ``validate`` of a CPU search import no torch, transformers, timm,
Ray, MLflow or Optuna. Checked in a fresh interpreter (``sys.modules`` after the command), so the assertion is about
what was imported, never about how long it took; ``benchmarks/startup.py`` measures the CPU seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "timm", "ray", "mlflow", "optuna")
PROBE = """
import json, sys
from eaglesearch.cli import main
heavy = json.loads(sys.argv[2])
sys.argv = ["eaglesearch", *json.loads(sys.argv[1])]
code = 0
try:
    main()
except SystemExit as stop:
    code = stop.code
print(json.dumps({"code": code, "heavy": [m for m in heavy if m in sys.modules]}))
"""


def _run(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(list(args)), json.dumps(HEAVY)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("args", [("--help",), ("validate", "search_spaces/demo_greedy.yaml")],
                         ids=["help", "validate"])
def test_command_imports_no_heavy_library(args: tuple[str, ...]) -> None:
    result = _run(*args)
    assert result["code"] == 0
    assert result["heavy"] == [], f"`eaglesearch {' '.join(args)}` imported {result['heavy']}"


def test_the_search_driver_scores_and_ties_import_without_torch() -> None:
    """The search's driver (controller and dispatcher; the trials' code is imported where trials run: the inline
    executor, a Ray worker), ties (``eaglesearch report``), rescoring and round decisions (``evaluate/summary.py``,
    from prediction records alone) import neither torch nor transformers."""
    code = ("import sys, eaglesearch.app.run, eaglesearch.app.ties, eaglesearch.trial.scoring; "
            "print([m for m in ('torch', 'transformers', 'timm') if m in sys.modules])")
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
