"""The package table of ARCHITECTURE.md ("Packages and who may import whom"), checked on the source.

Every module under ``eaglesearch/`` is parsed with :mod:`ast` (nothing is imported); each ``import`` of an
``eaglesearch`` module is mapped to its top-level package and checked against the table. Third-party engines are
confined to one package each (Ray → execution, MLflow → tracking, Optuna → search), and no module may grow past
:data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parent.parent / "eaglesearch"

# package -> the packages of ours it may import (its own modules are always allowed).
ALLOWED: dict[str, frozenset[str]] = {
    "spec": frozenset(),
    "artifacts": frozenset({"spec"}),
    "model": frozenset({"spec"}),
    "data": frozenset({"spec", "model"}),
    "train": frozenset({"spec", "model", "data", "artifacts"}),
    "evaluate": frozenset({"spec", "model", "data"}),
    "trial": frozenset({"spec", "model", "data", "train", "evaluate", "artifacts"}),
    "search": frozenset({"spec"}),
    "execution": frozenset({"spec", "search", "trial", "tracking"}),
    "tracking": frozenset({"spec"}),
    "report": frozenset({"spec", "tracking"}),
    "export": frozenset({"spec", "model", "data", "artifacts"}),
    "app": frozenset({"spec", "artifacts", "model", "data", "train", "evaluate", "trial", "search", "execution",
                      "tracking", "report", "export"}),
}
# Imports the table does not list, each with the reason it is not an upward import. Keep this short.
EXTRA_ALLOWED: dict[tuple[str, str], str] = {}
# The table's "data may import model (tokenizer only)": the modules of model/ that data/ may reach.
DATA_MAY_IMPORT_FROM_MODEL = frozenset({"eaglesearch.model.tokenizer", "eaglesearch.model.special_tokens"})
# Engines each confined to one package.
ENGINE_HOME = {"ray": "execution", "mlflow": "tracking", "optuna": "search", "lmms_eval": "export"}
# Top-level modules of the package that sit above the table ("cli.py: everything").
TOP_LEVEL = frozenset({"cli", "__init__"})

MAX_LINES = 400
# Modules allowed past MAX_LINES, each with the reason it cannot be split. Keep this short.
LONG_MODULES: dict[str, str] = {}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, as a path relative to the package root
    line: int
    target: str  # dotted name imported ("eaglesearch.train.loop", "ray.tune", ...)


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE_ROOT.rglob("*.py") if "pretrained" not in p.relative_to(PACKAGE_ROOT).parts)


def _dotted(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, root: Path = PACKAGE_ROOT) -> list[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = str(path.relative_to(root))
    here = _dotted(path, root).split(".")
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend(Import(rel, node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here if is_package else here[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            if node.level and not node.module:
                out.extend(Import(rel, node.lineno, f"{prefix}.{alias.name}") for alias in node.names)
            else:
                out.append(Import(rel, node.lineno, prefix))
    return out


def _package_of(rel_module: str) -> str:
    first = rel_module.split("/")[0]
    return first.removesuffix(".py")


def _violations() -> list[str]:
    problems: list[str] = []
    for path in _modules():
        for imp in _imports(path):
            owner = _package_of(imp.module)
            parts = imp.target.split(".")
            if parts[0] in ENGINE_HOME and ENGINE_HOME[parts[0]] != owner:
                problems.append(f"{imp.module}:{imp.line} imports {imp.target}: "
                                f"{parts[0]} belongs in {ENGINE_HOME[parts[0]]}/ only")
            if parts[0] != "eaglesearch" or len(parts) < 2 or owner in TOP_LEVEL:
                continue
            target = parts[1]
            if target == owner:
                continue
            if target not in ALLOWED:
                problems.append(f"{imp.module}:{imp.line} imports {imp.target}: {target} is above every package")
                continue
            if owner not in ALLOWED:
                problems.append(f"{imp.module}: package {owner}/ is not in the table of ARCHITECTURE.md")
                continue
            if target not in ALLOWED[owner] and (owner, target) not in EXTRA_ALLOWED:
                problems.append(f"{imp.module}:{imp.line} imports {imp.target}: {owner}/ may import only "
                                f"{sorted(ALLOWED[owner]) or 'nothing of ours'}")
            elif owner == "data" and target == "model" and imp.target not in DATA_MAY_IMPORT_FROM_MODEL:
                problems.append(f"{imp.module}:{imp.line} imports {imp.target}: data/ may import only "
                                f"{sorted(DATA_MAY_IMPORT_FROM_MODEL)} from model/")
    return problems


def test_imports_walk_downward() -> None:
    problems = _violations()
    assert not problems, "imports against ARCHITECTURE.md's package table:\n" + "\n".join(problems)


def test_no_module_past_line_limit() -> None:
    long = {str(p.relative_to(PACKAGE_ROOT)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    unexplained = {m: n for m, n in long.items() if m not in LONG_MODULES}
    assert not unexplained, f"modules over {MAX_LINES} lines (split them): {unexplained}"
    stale = sorted(set(LONG_MODULES) - set(long))
    assert not stale, f"LONG_MODULES lists modules that are no longer long: {stale}"


def test_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The checker itself: absolute, engine and relative imports are all resolved to what they name."""
    fake = tmp_path / "eaglesearch" / "model" / "x.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("from eaglesearch.execution import worker\nimport ray\nfrom ..train import loop\n"
                    "from . import eagle\n")
    targets = [i.target for i in _imports(fake, tmp_path / "eaglesearch")]
    assert targets == ["eaglesearch.execution", "ray", "eaglesearch.train", "eaglesearch.model.eagle"]
    assert "execution" not in ALLOWED["model"] and ENGINE_HOME["ray"] != "model"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_table_packages_do_not_import_upward_transitively(package: str) -> None:
    """No package may be allowed to import one that is allowed to import it (the table is a DAG)."""
    seen: set[str] = set()
    stack = list(ALLOWED[package])
    while stack:
        dep = stack.pop()
        assert dep != package, f"{package}/ reaches itself through the table"
        if dep not in seen:
            seen.add(dep)
            stack.extend(ALLOWED.get(dep, ()))
