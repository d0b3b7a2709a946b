"""How encoders declared outside the built-in families reach a process's expert registry.

Two ways besides a YAML ``experts:`` section:

* **Installed packages**, through the entry-point group ``eaglesearch.experts``. An entry point's object is a
  declaration (a ``CustomExpertSpec``, or a mapping of its fields; ``name`` defaults to the entry point's name) or a
  registration function called with no arguments, which registers families itself (``register_custom_expert`` or
  ``register_expert``) and/or returns declarations (one, or a list). In a ``pyproject.toml``::

      [project.entry-points."eaglesearch.experts"]
      effnet_lite0 = "my_encoders.effnet:DECLARATION"

* **A trial's own declarations**: a Ray worker knows only the built-in families, so before it builds a model,
  :func:`register_trial_experts` re-registers every declaration the trial's experts carry. A worker runs many
  trials: inside :func:`trial_expert_scope` those registrations last for one trial only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from eaglesearch.model.experts.custom import declarations_snapshot, register_custom_expert, restore_declarations
from eaglesearch.model.experts.registry import families_snapshot, restore_families
from eaglesearch.spec import ExpertSpec
from eaglesearch.spec.custom_expert import CustomExpertSpec

ENTRY_POINT_GROUP = "eaglesearch.experts"
_discovered = False


class PluginError(ValueError):
    """An ``eaglesearch.experts`` entry point that cannot be used; ``field`` names it for the error report."""

    def __init__(self, point: EntryPoint, reason: str) -> None:
        package = point.dist.name if point.dist is not None else "an installed package"
        super().__init__(f"entry point '{point.name} = {point.value}' of {package}: {reason}; fix or uninstall "
                         "that package")
        self.field = f"entry point {point.name} ({ENTRY_POINT_GROUP})"


def _declarations(point: EntryPoint, obj: Any) -> list[CustomExpertSpec]:
    """What an entry point's object (or a registration function's return value) declares."""
    if obj is None:
        return []
    if isinstance(obj, CustomExpertSpec):
        return [obj]
    if isinstance(obj, Mapping):
        try:
            return [CustomExpertSpec.model_validate({"name": point.name, **obj})]
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise PluginError(point, f"not a valid expert declaration ({problems})") from None
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes):
        return [d for item in obj for d in _declarations(point, item)]
    raise PluginError(point, f"gives a {type(obj).__name__}; expected a CustomExpertSpec, a mapping of its fields, "
                      "a list of those, or a registration function")


def discover_experts(check: bool = False) -> list[str]:
    """Register the encoders of every ``eaglesearch.experts`` entry point, once per process; the names declared.

    ``check`` runs each declaration's encoder once (``check_declaration``), as ``eaglesearch validate`` does.
    ``PluginError`` names the entry point that failed."""
    global _discovered
    if _discovered:
        return []
    names = []
    for point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = point.load()
            if callable(obj) and not isinstance(obj, CustomExpertSpec):
                obj = obj()
        except Exception as err:  # noqa: BLE001 - third-party code: reported with the entry point's name
            raise PluginError(point, f"loading it raised {type(err).__name__}: {err}") from None
        for declared in _declarations(point, obj):
            try:
                register_custom_expert(declared, check=check)
            except ValueError as err:
                raise PluginError(point, str(err)) from None
            names.append(declared.name)
    _discovered = True
    return names


def register_trial_experts(experts: Iterable[ExpertSpec]) -> None:
    """Make a trial's experts buildable in this process: installed entry points, then each declaration the trial
    carries (the one its key was computed from, which wins over an entry point of the same name)."""
    discover_experts()
    for expert in experts:
        if expert.custom is not None:
            register_custom_expert(expert.custom)


@contextmanager
def trial_expert_scope() -> Iterator[None]:
    """Undo, on exit, every expert family registered inside (a trial's own declarations), so the next trial in this
    process sees only the built-in families and the installed entry points (discovered first, and kept)."""
    discover_experts()
    families, declared = families_snapshot(), declarations_snapshot()
    try:
        yield
    finally:
        restore_families(families)
        restore_declarations(declared)
