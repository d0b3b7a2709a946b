"""Turn pydantic validation errors into SpecIssues with a line, a dotted field and an actionable message."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from eaglesearch.spec.errors import SpecIssue
from eaglesearch.spec.yaml_source import Loc, YamlDocument, format_loc


def _is_tag(part: Any) -> bool:
    return isinstance(part, str) and ("[" in part or part in {"greedy", "grid", "str", "ExpertSpec"})


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Every BaseModel class an annotation can hold (through Optional, unions, tuples, lists, dicts)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    found: list[type[BaseModel]] = []
    if origin in (typing.Union, types.UnionType, tuple, list, dict) or origin is not None:
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def allowed_keys(root: type[BaseModel], loc: Loc) -> list[str]:
    """Field names allowed at ``loc`` (a path to a mapping) under ``root``; empty if unknown."""
    candidates: list[type[BaseModel]] = [root]
    for part in loc:
        if isinstance(part, int) or _is_tag(part):
            continue
        nxt: list[type[BaseModel]] = []
        for model in candidates:
            field = model.model_fields.get(part)
            if field is not None:
                nxt.extend(_models_in(field.annotation))
        candidates = nxt
        if not candidates:
            return []
    names: list[str] = []
    for model in candidates:
        names.extend(n for n in model.model_fields if n not in names)
        names.extend(n for n in getattr(model, "yaml_shorthands", ()) if n not in names)
    return names


def _source_loc(loc: Loc, doc: YamlDocument | None) -> Loc:
    """Where in the YAML a validated location came from: a stage setting written with the ``train:`` shorthand
    (one flat stage, or a setting next to ``stages`` for all of them) sits at ``train.<field>``, not in a stage."""
    if doc is None:
        return loc
    for i in range(len(loc) - 2):
        if loc[i] == "train" and loc[i + 1] == "stages" and isinstance(loc[i + 2], int):
            node: Any = doc.data
            for part in loc[:i + 1]:
                node = node.get(part) if isinstance(node, dict) else None
            if isinstance(node, dict) and ("stages" not in node or (len(loc) > i + 3 and loc[i + 3] in node)):
                return loc[:i + 1] + loc[i + 3:]
    return loc


def issues_from_validation(
    err: ValidationError, root: type[BaseModel], doc: YamlDocument | None, prefix: Loc = ()
) -> list[SpecIssue]:
    issues = []
    for e in err.errors():
        loc = tuple(p for p in e["loc"] if not _is_tag(p))
        full = _source_loc(prefix + loc, doc)
        field = format_loc(full)
        kind = e["type"]
        given = e.get("input")
        if kind == "extra_forbidden":
            allowed = allowed_keys(root, loc[:-1])
            hint = f"; allowed keys here: {', '.join(allowed)}" if allowed else ""
            message = f"unknown key '{loc[-1]}'{hint}"
        elif kind == "missing":
            message = "required, but not given"
        elif kind == "union_tag_invalid":
            ctx = e.get("ctx", {})
            full = full + (str(ctx.get("discriminator", "'kind'")).strip("'"),)
            field = format_loc(full)
            expected = str(ctx.get("expected_tags", "")).replace("'", "")
            message = f"unknown value '{ctx.get('tag')}'; allowed: {expected}"
        elif kind == "union_tag_not_found":
            message = "needs a 'kind' key saying which strategy it is (grid or greedy)"
        elif kind == "value_error":
            message = str(e["msg"]).removeprefix("Value error, ")
        else:
            message = f"{e['msg']} (got {given!r})" if not isinstance(given, dict) else e["msg"]
        line = doc.line_of(full) if doc is not None else None
        issues.append(SpecIssue(field=field, message=message, file=doc.path if doc else None, line=line))
    return issues
