"""Every shipped search space passes ``eaglesearch validate`` and ``eaglesearch plan`` through the command line.

``validate`` includes the preflight (every reachable trial's visual tokens fit ``data.max_length``): the spaces
that grow them (sequence append, tiling) raise it. Paper-scale spaces read LLaVA data that exists only on the
cluster, so they are validated with ``--no-check-paths``; without it they stop on the missing files. Plans here count trials and artifacts
(``--no-measure``); the models of the paper spaces are sized on the meta device in ``test_planner.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglesearch.cli import app

REPO = Path(__file__).resolve().parent.parent
SPACES = sorted(p.name for p in (REPO / "search_spaces").glob("*.yaml"))


WRITTEN_DATA = {"small_real_greedy.yaml"}  # its data is written by scripts/sklearn_digits.py (tests/test_small_real.py)


def _flags(name: str) -> list[str]:
    return ["--no-check-paths"] if name.startswith("paper_") or name in WRITTEN_DATA else []


def _invoke(monkeypatch: pytest.MonkeyPatch, *args: str):
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(app, list(args))
    return result, " ".join(result.output.split())


def test_every_space_is_found() -> None:
    assert len(SPACES) >= 14 and "tiny_fusion.yaml" in SPACES and "tiny_clip_resolution.yaml" in SPACES


@pytest.mark.parametrize("name", SPACES)
def test_shipped_space_validates(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result, output = _invoke(monkeypatch, "validate", f"search_spaces/{name}", *_flags(name))
    assert result.exit_code == 0, output
    assert output.startswith("ok ")


@pytest.mark.parametrize("name", SPACES)
def test_shipped_space_plans(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, output = _invoke(monkeypatch, "plan", f"search_spaces/{name}", "--no-measure", "--workdir",
                             str(tmp_path), *_flags(name))
    assert result.exit_code == 0, output
    assert "at most" in output and "trials" in output and "Traceback" not in output


@pytest.mark.parametrize("name", [s for s in SPACES if s.startswith("paper_")])
def test_paper_space_without_the_opt_out_names_its_missing_data(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result, output = _invoke(monkeypatch, "validate", f"search_spaces/{name}")
    assert result.exit_code == 2, output
    assert "data.train.llava_665k.path" in output and "does not exist on this machine" in output
    assert "--no-check-paths" in output and "Traceback" not in output

