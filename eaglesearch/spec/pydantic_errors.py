"""Turn pydantic validation errors into SpecIssues with a line, a dotted field and an actionable message.

One mistake gives one message. Pydantic reports a failed union member once per branch (``strategy.base[0]``
is a string *or* an expert mapping: a bad mapping fails both), and a collection whose item failed once more
("Tuple should have at least 1 item after validation"); :func:`issues_from_validation` keeps the branch that
matches what was written and drops those follow-ups. Union tags (``greedy``, ``str``, ``function-after[...]``)
are removed from locations by walking the model's annotations, so a field that happens to share a tag's name
(``model.grid``) keeps its own name.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ValidationError

from eaglesearch.spec.errors import SpecIssue
from eaglesearch.spec.yaml_source import Loc, YamlDocument, format_loc

_COLLECTION_FOLLOW_UPS = frozenset({"too_short", "too_long"})


def _unwrap(annotation: Any) -> Any:
    """``X`` for ``Annotated[X, ...]`` and ``X | None`` (pydantic tags neither)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


def _union_members(annotation: Any) -> list[Any] | None:
    """The members of a union that pydantic reports per branch (with a tag in the location), else ``None``."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return None


def _member_for_tag(members: list[Any], tag: str) -> Any:
    """The union member a location tag names: a discriminator value (``greedy``) or a type name (``str``,
    ``function-after[_check(), ExpertSpec]``)."""
    for member in members:
        member = _unwrap(member)
        if isinstance(member, type) and issubclass(member, BaseModel):
            kind = member.model_fields.get("kind")
            if kind is not None and tag in typing.get_args(kind.annotation):
                return member
        name = getattr(member, "__name__", None)
        if name and re.search(rf"(^|[^\w]){re.escape(name)}($|[^\w])", tag):
            return member
    return None


def _walk(root: type[BaseModel], raw: tuple[Any, ...]) -> tuple[Loc, list[tuple[Loc, str]], Any]:
    """``raw`` (a pydantic error location under ``root``) without its union tags; each tag with the location of
    the union it chose a branch of; and the annotation the location ends at (``None`` once unknown)."""
    annotation: Any = root
    loc: list[str | int] = []
    branches: list[tuple[Loc, str]] = []
    for part in raw:
        members = _union_members(annotation) if annotation is not None else None
        if members is not None and isinstance(part, str):
            branches.append((tuple(loc), part))
            annotation = _member_for_tag(members, part)
            continue
        loc.append(part)
        annotation = _unwrap(annotation) if annotation is not None else None
        origin = typing.get_origin(annotation)
        args = typing.get_args(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            annotation = field.annotation if field is not None else None
        elif origin in (tuple, list) and isinstance(part, int) and args:
            annotation = args[0]
        elif origin is dict and isinstance(part, str) and len(args) == 2:
            annotation = args[1]
        else:
            annotation = None
    return tuple(loc), branches, annotation


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


def allowed_keys(root: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names allowed at ``loc`` (a path to a mapping, pydantic's or a clean one) under ``root``; empty if
    unknown."""
    annotation = _walk(root, loc)[2]
    names: list[str] = []
    for model in _models_in(annotation):
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


def _one_per_mistake(root: type[BaseModel], errors: list[dict[str, Any]]) -> list[tuple[Loc, dict[str, Any]]]:
    """Each error with its clean location, minus the follow-ups of another error (see the module docstring)."""
    walked = [(e, *_walk(root, tuple(e["loc"]))[:2]) for e in errors]
    # Per union position: the branches that got past the type check (an error deeper than the position).
    matched: dict[Loc, set[str]] = {}
    for _, loc, branches in walked:
        for at, tag in branches:
            if len(loc) > len(at):
                matched.setdefault(at, set()).add(tag)
    kept: list[tuple[Loc, dict[str, Any]]] = []
    alternatives: dict[Loc, list[str]] = {}  # every branch failed its type check: one message naming them all
    for e, loc, branches in walked:
        if any(at in matched and tag not in matched[at] for at, tag in branches):
            continue  # another branch matched what was written; this one's type mismatch is noise
        last = branches[-1] if branches else None
        if last is not None and last[0] == loc and loc not in matched:
            if loc not in alternatives:
                kept.append((loc, dict(e)))
                alternatives[loc] = []
            alternatives[loc].append(str(e["msg"]).removeprefix("Input should be "))
            continue
        kept.append((loc, dict(e)))
    for loc, e in kept:
        if len(alternatives.get(loc, ())) > 1 and e["type"] not in _COLLECTION_FOLLOW_UPS:
            e["msg"] = "Input should be " + ", or ".join(alternatives[loc])
    deeper = [loc for loc, _ in kept]
    out = [(loc, e) for loc, e in kept
           if not (e["type"] in _COLLECTION_FOLLOW_UPS and any(len(d) > len(loc) and d[:len(loc)] == loc
                                                                 for d in deeper))]
    seen: set[tuple[Loc, str]] = set()
    unique = []
    for loc, e in out:
        if (loc, e["msg"]) not in seen:
            seen.add((loc, e["msg"]))
            unique.append((loc, e))
    return unique


Placer = Callable[[Loc], tuple[YamlDocument, Loc]]


def issues_from_validation(
    err: ValidationError, root: type[BaseModel], doc: YamlDocument | None, prefix: Loc = (),
    place: Placer | None = None,
) -> list[SpecIssue]:
    """One issue per mistake; ``prefix`` is where ``root`` sits in ``doc``. ``place``, when given, says for each
    location under ``root`` which document and location wrote it (a trial's fields come from several files)."""
    issues = []
    for loc, e in _one_per_mistake(root, err.errors()):
        if place is not None:
            doc, full = place(loc)
        else:
            full = prefix + loc
        full = _source_loc(full, doc)
        field = format_loc(full)
        kind = e["type"]
        given = e.get("input")
        if kind == "extra_forbidden":
            allowed = allowed_keys(root, tuple(e["loc"])[:-1])
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
