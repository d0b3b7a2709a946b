"""Read conversations in the LLaVA json format, the one format eaglesearch trains and evaluates on.

::

    [{"id": "000001", "image": "rel/path.png",
      "conversations": [{"from": "human", "value": "<image>\\nQuestion?"}, {"from": "gpt", "value": "Answer"},
                        {"from": "human", "value": "And?"}, {"from": "gpt", "value": "More"}]}]

``image`` is relative to an image folder and optional (text-only samples, like OpenHermes in Eagle-1.8M). Roles
``human``/``gpt`` (also ``user``/``assistant``) map to ``user``/``assistant``; turns must alternate, starting with
the user, for any number of rounds. Every error names the file, the record (index and id) and what to fix.

:func:`read_llava_json` is strict: the first bad record raises. :func:`read_llava_records` reports every record's
problem instead (a :class:`DataProblem` in its place), for :mod:`eaglesearch.data.policy` to skip and count.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eaglesearch.data.image_ref import ImageRef
from eaglesearch.spec.data import ProblemKind

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Sample:
    """One conversation about (at most) one image; ``turns`` are ``(role, text)`` with role user/assistant.

    ``origin`` ("file: record i") is where it was read from, for messages; it takes no part in equality.
    """

    id: str
    image: ImageRef | None
    turns: tuple[tuple[str, str], ...]
    origin: str | None = field(default=None, compare=False, repr=False)
    source: str | None = field(default=None, compare=False)  # the mixture source it was read from

    @property
    def name(self) -> str:
        """How messages name the sample: its source, id and, when known, the file and record it came from."""
        where = f"{self.origin}: " if self.origin else ""
        return f"{where}sample {self.id!r}" + (f" of source '{self.source}'" if self.source else "")


class DataProblem(ValueError):
    """A sample that cannot be trained on as it is; ``kind`` says why (one of ``spec.data.PROBLEM_KINDS``).

    The message names the sample (file, record, id) and the fix; ``sample_id`` is the id (or ``#index``).
    """

    def __init__(self, kind: ProblemKind, sample_id: str, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind
        self.sample_id = sample_id
        self.source = source  # the mixture source of the sample, when known (skips are counted per source)

    def __reduce__(self) -> tuple[type[DataProblem], tuple[ProblemKind, str, str, str | None]]:
        # picklable: it may cross process boundaries (a loader worker that could not decode an image)
        return (DataProblem, (self.kind, self.sample_id, str(self), self.source))


def read_llava_json(json_path: Path, image_folder: Path) -> list[Sample]:
    """Every record of a LLaVA-format json, validated, with image paths resolved against ``image_folder``.

    Strict: the first record with a problem raises its :class:`DataProblem` (a ``ValueError``).
    """
    samples = []
    for item in read_llava_records(json_path, image_folder):
        if isinstance(item, DataProblem):
            raise item
        samples.append(item)
    return samples


def read_llava_records(json_path: Path, image_folder: Path, source: str | None = None
                       ) -> list[Sample | DataProblem]:
    """Each record of the file as a :class:`Sample`, or the :class:`DataProblem` (``malformed`` or
    ``missing_image``) that keeps it from being one. File-level problems (missing, not json, not a list) raise.
    A ``.jsonl`` file holds one record per line (Cambrian's format); anything else is one json list."""
    json_path, image_folder = Path(json_path), Path(image_folder)
    if not json_path.is_file():
        raise ValueError(f"{json_path}: file not found; check data.train/eval json_path")
    records = _jsonl(json_path) if json_path.suffix == ".jsonl" else _json_list(json_path)
    out: list[Sample | DataProblem] = []
    for index, record in enumerate(records):
        try:
            out.append(_parse_record(record, index, json_path, image_folder, source))
        except DataProblem as problem:
            problem.source = source
            out.append(problem)
    return out


def _json_list(json_path: Path) -> list[Any]:
    try:
        records = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path}: not valid json ({err}); the file must hold a json list of records") from None
    if not isinstance(records, list):
        kind = type(records).__name__
        raise ValueError(
            f"{json_path}: the top level is a {kind}; LLaVA format is a json list of records "
            "{id, image, conversations}")
    return records


def _jsonl(json_path: Path) -> list[Any]:
    """One record per non-blank line; a line that is not json is a record that is not an object (``malformed``,
    so ``on_problem`` decides), not a failure of the whole file."""
    records: list[Any] = []
    with json_path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    records.append(f"line {number}: not valid json ({err})")
    return records


def _parse_record(record: Any, index: int, json_path: Path, image_folder: Path, source: str | None = None
                  ) -> Sample:
    where = f"{json_path}: record {index}"
    if not isinstance(record, dict):
        detail = record if isinstance(record, str) and record.startswith("line ") else f"a {type(record).__name__}"
        raise DataProblem("malformed", f"#{index}", f"{where} is {detail}; each record must be an "
                          "object {id, image, conversations}")
    sample_id = str(record.get("id", index))
    where = f"{json_path}: record {index} (id {sample_id!r})"
    turns = parse_turns(record.get("conversations"), sample_id, where)
    image: Path | None = None
    if record.get("image") is not None:
        if not isinstance(record["image"], str):
            raise DataProblem("malformed", sample_id, f"{where}: 'image' must be one relative path string; got "
                              f"{record['image']!r}")
        image = image_folder / record["image"]
        if not image.is_file():
            raise DataProblem("missing_image", sample_id,
                              f"{where}: image file {image} does not exist; fix the record's 'image' or the split's "
                              f"image_folder ({image_folder})")
    return Sample(id=sample_id, image=image, turns=turns, origin=f"{json_path} record {index}", source=source)


def parse_turns(conversations: Any, sample_id: str, where: str) -> tuple[tuple[str, str], ...]:
    """A LLaVA ``conversations`` list as ``(role, text)`` turns; a ``malformed`` :class:`DataProblem` naming
    ``where`` and the fix otherwise. Every source format shares it, so every format has one conversation rule."""

    def malformed(message: str) -> DataProblem:
        return DataProblem("malformed", sample_id, message)

    if not isinstance(conversations, list) or not conversations:
        raise malformed(f"{where} has no 'conversations' list; add "
                        '"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]')
    turns = []
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or not isinstance(turn.get("value"), str):
            raise malformed(f"{where}, turn {t}: each turn must be an object with 'from' and a string 'value'")
        role = ROLES.get(turn["from"])
        if role is None:
            raise malformed(f"{where}, turn {t}: unknown role {turn['from']!r}; use one of {sorted(ROLES)}")
        expected = "user" if t % 2 == 0 else "assistant"
        if role != expected:
            raise malformed(f"{where}, turn {t}: expected a {expected} turn (turns alternate human/gpt, starting "
                            f"with human); got {turn['from']!r}")
        turns.append((role, turn["value"]))
    return tuple(turns)
