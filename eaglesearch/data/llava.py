"""Read conversations in the LLaVA json format, the one format eaglesearch trains and evaluates on.

::

    [{"id": "000001", "image": "rel/path.png",
      "conversations": [{"from": "human", "value": "<image>\\nQuestion?"}, {"from": "gpt", "value": "Answer"}]}]

``image`` is relative to an image folder and optional (text-only samples). Roles ``human``/``gpt`` (also
``user``/``assistant``) map to ``user``/``assistant``; turns must alternate, starting with the user. Every error
names the file, the record (index and id) and what to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}


@dataclass(frozen=True)
class Sample:
    """One conversation about (at most) one image; ``turns`` are ``(role, text)`` with role user/assistant."""

    id: str
    image: Path | None
    turns: tuple[tuple[str, str], ...]


def read_llava_json(json_path: Path, image_folder: Path) -> list[Sample]:
    """Every record of a LLaVA-format json, validated, with image paths resolved against ``image_folder``."""
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
    return [_parse_record(record, index, json_path, image_folder) for index, record in enumerate(records)]


def _parse_record(record: Any, index: int, json_path: Path, image_folder: Path) -> Sample:
    where = f"{json_path}: record {index}"
    if not isinstance(record, dict):
        raise ValueError(f"{where} is a {type(record).__name__}; each record must be an object "
                         "{id, image, conversations}")
    sample_id = str(record.get("id", index))
    where = f"{json_path}: record {index} (id {sample_id!r})"

    conversations = record.get("conversations")
    if not isinstance(conversations, list) or not conversations:
        raise ValueError(f"{where} has no 'conversations' list; add "
                         '"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]')
    turns = []
    for t, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or not isinstance(turn.get("value"), str):
            raise ValueError(f"{where}, turn {t}: each turn must be an object with 'from' and a string 'value'")
        role = ROLES.get(turn["from"])
        if role is None:
            raise ValueError(f"{where}, turn {t}: unknown role {turn['from']!r}; use one of {sorted(ROLES)}")
        expected = "user" if t % 2 == 0 else "assistant"
        if role != expected:
            raise ValueError(f"{where}, turn {t}: expected a {expected} turn (turns alternate human/gpt, starting "
                             f"with human); got {turn['from']!r}")
        turns.append((role, turn["value"]))

    image: Path | None = None
    if record.get("image") is not None:
        if not isinstance(record["image"], str):
            raise ValueError(f"{where}: 'image' must be one relative path string; got {record['image']!r}")
        image = image_folder / record["image"]
        if not image.is_file():
            raise ValueError(f"{where}: image file {image} does not exist; fix the record's 'image' or the split's "
                             f"image_folder ({image_folder})")
    return Sample(id=sample_id, image=image, turns=tuple(turns))
