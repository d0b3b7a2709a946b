"""Base class for spec values: frozen, strict about unknown keys."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class SpecModel(BaseModel):
    """A frozen value: unknown keys are errors, assignment is forbidden, and it hashes."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


def repeated(names: list[str]) -> list[str]:
    """The names that occur more than once, sorted (for "must be unique" errors)."""
    return sorted({n for n in names if names.count(n) > 1})
