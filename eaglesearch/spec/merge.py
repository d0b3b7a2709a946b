"""How a search space's ``overrides`` merge into its recipe, and what a list in them replaces.

Nested mappings merge; anything else replaces. A mapping merged into a list of named mappings (``train.stages``)
merges into the items by name, so ``{stages: {sft: {lr: 1e-4}}}`` changes one field of one stage. A *list* in the
overrides replaces the recipe's list whole: :func:`dropped_by_lists` names what the recipe set that such a list
leaves out, which the loader reports as a :class:`~eaglesearch.spec.errors.SpecWarning`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from eaglesearch.spec.yaml_source import Loc


def _named(items: Any) -> dict[str, dict[str, Any]] | None:
    """``{name: item}`` when ``items`` is a list of mappings that each have a unique ``name`` (e.g. training stages)."""
    if not isinstance(items, list) or not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return None
    by_name = {i["name"]: i for i in items}
    return by_name if len(by_name) == len(items) else None


class MergeError(ValueError):
    """``overrides`` name a list item that does not exist; ``loc`` is where, inside the overrides."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.loc = loc


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any], _at: Loc = ()) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``; nested mappings merge, everything else replaces.

    A mapping merged into a list of named mappings (``train.stages``) merges into the items by name:
    ``{stages: {sft: {lr: 1e-4}}}`` changes the ``sft`` stage's lr. Unknown names are errors (:class:`MergeError`).
    """
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        named = _named(out.get(k))
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v, (*_at, k))
        elif isinstance(v, Mapping) and named is not None:
            unknown = sorted(set(v) - set(named))
            if unknown:
                raise MergeError(f"'{k}' has no item named {', '.join(map(repr, unknown))}; "
                                 f"names: {', '.join(named)}", (*_at, k, unknown[0]))
            out[k] = [deep_merge(item, v[item["name"]], (*_at, k, item["name"])) if item["name"] in v else item
                      for item in out[k]]
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``a.b.c``; in a list of named mappings a segment picks the item by name
    (``train.stages.prealign.enabled``)."""
    parts = dotted.split(".")
    node: Any = data
    for p in parts[:-1]:
        named = _named(node)
        if named is not None:
            if p not in named:
                raise ValueError(f"'{dotted}': no item named '{p}'; names: {', '.join(named)}")
            node = named[p]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"'{dotted}' goes through '{p}', which is not a mapping")
        node = node.setdefault(p, {})
    named = _named(node)
    if named is not None:
        raise ValueError(f"'{dotted}' ends at a whole item of a list; set one of its fields instead")
    if not isinstance(node, dict):
        raise ValueError(f"'{dotted}' goes through a value that is not a mapping")
    node[parts[-1]] = copy.deepcopy(value)


def dropped_by_lists(recipe: Mapping[str, Any], overrides: Mapping[str, Any],
                     _at: Loc = ()) -> list[tuple[Loc, list[str]]]:
    """Where ``overrides`` give a list of named mappings in place of the recipe's (``train.stages: [...]``), what
    the recipe set that the list leaves out: ``(where in the overrides, ["sft.lr", "prealign (whole item)"])``.
    ``recipe`` holds only what the recipe set (``model_dump(exclude_unset=True)``)."""
    out: list[tuple[Loc, list[str]]] = []
    for key, value in overrides.items():
        old = recipe.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out += dropped_by_lists(old, value, (*_at, key))
            continue
        before = _named(old)
        if not isinstance(value, list) or before is None:
            continue
        after = _named(value) or {}
        dropped: list[str] = []
        for name, item in before.items():
            if name not in after:
                dropped.append(f"{name} (whole item)")
            else:
                dropped += [f"{name}.{field}" for field in item if field not in after[name]]
        if dropped:
            out.append(((*_at, key), dropped))
    return out
