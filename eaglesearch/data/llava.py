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

from eaglesearch.spec.data import ProblemKind

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Sample:
    """One conversation about (at most) one image; ``turns`` are ``(role, text)`` with role user/assistant.

    ``origin`` ("file: record i") is where it was read from, for messages; it takes no part in equality.
    """

    id: str
    image: Path | None
    turns: tuple[tuple[str, str], ...]
    origin: str | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """How messages name the sample: its id and, when known, the file and record it came from."""
        return f"{self.origin}: sample {self.id!r}" if self.origin else f"sample {self.id!r}"


class DataProblem(ValueError):
    """A sample that cannot be trained on as it is; ``kind`` says why (one of ``spec.data.PROBLEM_KINDS``).

    The message names the sample (file, record, id) and the fix; ``sample_id`` is the id (or ``#index``).
    """

    def __init__(self, kind: ProblemKind, sample_id: str, message: str) -> None:
        super().__init__(message)
        self.kind: ProblemKind = kind
        self.sample_id = sample_id

    def __reduce__(self) -> tuple[type[DataProblem], tuple[ProblemKind, str, str]]:
        return (DataProblem, (self.kind, self.sample_id, str(self)))  # picklable (it may cross process boundaries)


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


def read_llava_records(json_path: Path, image_folder: Path) -> list[Sample | DataProblem]:
    """Each record of the file as a :class:`Sample`, or the :class:`DataProblem` (``malformed`` or
    ``missing_image``) that keeps it from being one. File-level problems (missing, not json, not a list) raise."""
    json_path, image_folder = Path(json_path), Path(image_folder)
    if not json_path.is_file():
        raise ValueError(f"{json_path}: file not found; check data.train/eval json_path")
    try:
        records = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{json_path}: not valid json ({err}); the file must hold a json list of records") from None
    if not isinstance(records, list):
        raise ValueError(f"{json_path}: the top level is a {type(records).__name__}; LLaVA format is a json list of "
                         "records {id, image, conversations}")
    out: list[Sample | DataProblem] = []
    for index, record in enumerate(records):
        try:
            out.append(_parse_record(record, index, json_path, image_folder))
        except DataProblem as problem:
            out.append(problem)
    return out


def _parse_record(record: Any, index: int, json_path: Path, image_folder: Path) -> Sample:
    where = f"{json_path}: record {index}"
    if not isinstance(record, dict):
        raise DataProblem("malformed", f"#{index}", f"{where} is a {type(record).__name__}; each record must be an "
                          "object {id, image, conversations}")
    sample_id = str(record.get("id", index))
    where = f"{json_path}: record {index} (id {sample_id!r})"

    def malformed(message: str) -> DataProblem:
        return DataProblem("malformed", sample_id, message)

    conversations = record.get("conversations")
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

    image: Path | None = None
    if record.get("image") is not None:
        if not isinstance(record["image"], str):
            raise malformed(f"{where}: 'image' must be one relative path string; got {record['image']!r}")
        image = image_folder / record["image"]
        if not image.is_file():
            raise DataProblem("missing_image", sample_id,
                              f"{where}: image file {image} does not exist; fix the record's 'image' or the split's "
                              f"image_folder ({image_folder})")
    return Sample(id=sample_id, image=image, turns=tuple(turns), origin=f"{json_path} record {index}")
