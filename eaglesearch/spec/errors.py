"""Errors a user can act on: every one names the file, the line, the field and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SpecIssue:
    """One problem in one field of one file."""

    field: str
    message: str
    file: Path | None = None
    line: int | None = None

    def render(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        name = self.field or "(top level)"
        return f"{where}{name}: {self.message}"


@dataclass
class SpecError(Exception):
    """Raised when a recipe or search space is invalid. ``str(err)`` is the message shown to the user."""

    issues: list[SpecIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.issues) == 1:
            return self.issues[0].render()
        lines = [f"{len(self.issues)} problems:"] + [f"  - {i.render()}" for i in self.issues]
        return "\n".join(lines)

    @classmethod
    def single(cls, field: str, message: str, file: Path | None = None, line: int | None = None) -> SpecError:
        return cls([SpecIssue(field=field, message=message, file=file, line=line)])


class SpecWarning(UserWarning):
    """Something a file says that is valid but likely not what its author meant (``str`` is the rendered
    :class:`SpecIssue`: file, line, field, what happens and how to say it otherwise)."""
