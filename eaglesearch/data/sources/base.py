"""The data-source seam: one small interface every training format implements, and its registry.

A source turns one ``SourceSpec`` (``spec/sources.py``) into *records*: :class:`~eaglesearch.data.llava.Sample`
(id, conversation, image reference, source name), or the :class:`~eaglesearch.data.llava.DataProblem` that keeps
a record from being one (the data policy skips and counts it, or stops). Records hold image *references*
(``data/image_ref.py``), never pixels, so reading a source costs memory per record, not per image.

Each format owns everything that depends on it: the fields it needs (:meth:`DataSource.check`, run by
``validate``/``plan``/``run`` before anything trains), how it reads, how many records it has (for ``plan``), and
whether the data is generated here. Adding a format is one module with a subclass and a ``register_source``
call, imported by ``data/sources/__init__.py``; nothing else branches on the format.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from eaglesearch.data.llava import DataProblem, Sample
from eaglesearch.spec.data import DataSpec
from eaglesearch.spec.sources import SourceSpec

Record = Sample | DataProblem


@dataclass(frozen=True)
class SourceContext:
    """What a source may need besides its own spec: the trial's data spec (the generator's settings) and the
    folder generated data is written to."""

    data: DataSpec
    data_dir: Path


@dataclass(frozen=True)
class SourceIssue:
    """A problem with a source's declaration: the ``SourceSpec`` field to fix and what is wrong."""

    field: str
    message: str


class DataSource(ABC):
    """One declared source of a mixture. Subclasses set ``format`` and implement :meth:`records`."""

    format: ClassVar[str]
    needs_path: ClassVar[bool] = True
    generated: ClassVar[bool] = False  # written here by the generator: plan can build and time a trial on it

    def __init__(self, name: str, spec: SourceSpec, context: SourceContext) -> None:
        self.name, self.spec, self.context = name, spec, context

    @property
    def path(self) -> Path:
        assert self.spec.path is not None, "check() reports a missing path before a source is read"
        return Path(self.spec.path)

    def check(self, paths: bool = True) -> list[SourceIssue]:
        """Problems found without reading the records: a missing ``path`` (and, with ``paths``, one that does not
        exist here), fields this format does not use, and what the format itself requires (:meth:`check_more`)."""
        issues = []
        if self.needs_path and self.spec.path is None:
            issues.append(SourceIssue("path", f"source '{self.name}' ({self.format}) needs a path: the file or "
                                      "folder it is read from"))
        elif paths and self.needs_path and not self.path.exists():
            issues.append(SourceIssue("path", f"source '{self.name}': '{self.spec.path}' does not exist on this "
                                      f"machine (relative paths are read from the working directory, {Path.cwd()}); "
                                      "fix the path, or pass --no-check-paths when it exists only on the machines "
                                      "that run the trials"))
        if paths and self.spec.image_folder is not None and not Path(self.spec.image_folder).is_dir():
            issues.append(SourceIssue("image_folder", f"source '{self.name}': image folder "
                                      f"'{self.spec.image_folder}' does not exist on this machine"))
        if self.spec.tasks is not None and not self.generated:
            issues.append(SourceIssue("tasks", f"source '{self.name}': tasks is for the synthetic formats; a "
                                      f"{self.format} source holds what its file holds"))
        if not issues and (paths or not self.needs_path):
            issues += self.check_more()
        return issues

    def check_more(self) -> list[SourceIssue]:
        """Format-specific checks that may open the source (e.g. that a table has the needed columns)."""
        return []

    @abstractmethod
    def records(self) -> list[Record]:
        """Every record in stored order, each a sample (with ``source`` set to this source's name) or the problem
        that keeps it from being one. A problem with the whole source (unreadable file) raises ``ValueError``."""

    def count(self) -> int | None:
        """How many records the source holds, when that is cheap to learn without reading them; else None."""
        return None


_REGISTRY: dict[str, type[DataSource]] = {}


def register_source(cls: type[DataSource]) -> type[DataSource]:
    """Make a format available to specs by its ``format`` name (usable as a class decorator)."""
    existing = _REGISTRY.get(cls.format)
    if existing is not None and existing is not cls:
        raise ValueError(f"source format '{cls.format}' is already registered by {existing.__qualname__}")
    _REGISTRY[cls.format] = cls
    return cls


def source_formats() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def source_class(fmt: str) -> type[DataSource]:
    try:
        return _REGISTRY[fmt]
    except KeyError:
        raise ValueError(f"unknown source format '{fmt}'; registered formats: {', '.join(source_formats())}"
                         ) from None


def build_source(name: str, spec: SourceSpec, context: SourceContext) -> DataSource:
    return source_class(spec.format)(name, spec, context)
