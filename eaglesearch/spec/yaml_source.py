"""YAML loading that remembers where every key and item came from, so errors can point at a line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from eaglesearch.spec.errors import SpecError

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML mapping plus the 1-based line of every path in it."""

    path: Path
    data: dict[str, Any]
    lines: dict[Loc, int]

    def line_of(self, loc: Loc) -> int | None:
        """The line of ``loc`` or of its nearest ancestor that appears in the file."""
        loc = tuple(loc)
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines.setdefault(loc, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[loc + (key,)] = key_node.start_mark.line + 1
            _walk(value_node, loc + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[loc + (i,)] = item.start_mark.line + 1
            _walk(item, loc + (i,), lines)


def read_yaml(path: Path) -> YamlDocument:
    """Parse ``path`` into a mapping. Syntax errors, duplicate keys and non-mapping documents are SpecErrors."""
    path = Path(path)
    if not path.is_file():
        raise SpecError.single("", f"file not found: {path}", file=path)
    text = path.read_text()
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(err, "problem", None) or str(err)
        raise SpecError.single("", f"not valid YAML: {problem}", file=path, line=line) from None
    if node is None or not isinstance(data, dict):
        raise SpecError.single("", "the file must be a YAML mapping (key: value pairs) at the top level", file=path, line=1)
    lines: dict[Loc, int] = {}
    _walk(node, (), lines)
    _check_duplicate_keys(node, path)
    return YamlDocument(path=path, data=data, lines=lines)


def _check_duplicate_keys(node: yaml.Node, path: Path, loc: Loc = ()) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                field = ".".join(str(p) for p in loc + (key,))
                raise SpecError.single(
                    field, f"key appears twice (first on line {seen[key]}); keep one", file=path,
                    line=key_node.start_mark.line + 1,
                )
            seen[key] = key_node.start_mark.line + 1
            _check_duplicate_keys(value_node, path, loc + (key,))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, path, loc + (i,))


def format_loc(loc: Loc) -> str:
    """``("strategy", "candidates", 1)`` → ``strategy.candidates[1]``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
