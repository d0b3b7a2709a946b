"""MME loader: 14 yes/no subtasks, exactly two questions per image (acc+ needs both right).

Columns: id ``index`` (VLMEvalKit) / ``id``, else the record's position — lmms-lab/MME's ``question_id`` is the
image (``"code_reasoning/0020.png"``), shared by both questions, so it is the image id, not the question id;
question ``question`` (as shipped, ending " Please answer yes or no."; the standard prompt replaces that, see
``prompts.py``) or ``text``; answer ``answer`` ("Yes"/"No" in any case, stored lower-case); subtask ``category``.
Image id: ``question_id`` (lmms-lab), ``image_path`` (VLMEvalKit), else the ``image`` path of a json/jsonl record.

``meta["category"]`` = subtask, ``meta["image"]`` = image id, ``meta["group"]`` = ``"<subtask>/<image>"`` (the
scoring unit: ``limit`` keeps whole pairs). Every subtask/image must have exactly two questions in the file.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from eaglesearch.evaluate.benchmarks.formats import Record, Row, scalar_text
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.pope import yes_no_answer
from eaglesearch.evaluate.benchmarks.prompts import SHORT_ANSWER, clean_question
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext

QUESTIONS_PER_IMAGE = 2
IMAGE_ID_COLUMNS = ("question_id", "image_path")


def _image_id(row: Row, path_images: bool) -> str | None:
    for column in IMAGE_ID_COLUMNS:
        if row.get(column) not in (None, ""):
            return scalar_text(row[column])
    if path_images and isinstance(row.get("image"), str) and row["image"]:
        return row["image"]
    return None


class MMELoader:
    id_fields = ("index", "id")

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.path_images = ctx.table.format in ("json", "jsonl")
        counts = Counter(self._group(row) for row in ctx.table.rows)
        odd = [(group, n) for group, n in counts.items() if group is not None and n != QUESTIONS_PER_IMAGE]
        if odd:
            group, n = odd[0]
            raise ValueError(f"{ctx.table.path}: MME image {group!r} has {n} question(s) ({len(odd)} image(s) are "
                             f"not pairs); every image needs exactly {QUESTIONS_PER_IMAGE} yes/no questions for "
                             "acc+ — use the complete MME file (limit keeps whole pairs)")

    def _group(self, row: Row) -> str | None:
        image = _image_id(row, self.path_images)
        category = row.get("category")
        return None if image is None or category in (None, "") else f"{scalar_text(category)}/{image}"

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        category, image_id = self._keys(record)
        return f"{category}/{image_id}"

    def _keys(self, record: Record) -> tuple[str, str]:
        category = record.text("category", fix="add the MME subtask (existence, count, ..., code_reasoning)")
        image_id = _image_id(dict(record.data), self.path_images)
        if image_id is None:
            raise record.error(f"has no image id to pair its questions by (looked for "
                               f"{', '.join(map(repr, IMAGE_ID_COLUMNS))} and a json 'image' path); add one")
        return category, image_id

    def items(self, record: Record) -> list[BenchmarkItem]:
        question = clean_question(record.text("question", "text", fix="add the question text"), SHORT_ANSWER)
        answer = yes_no_answer(record, "answer", "label")
        category, image_id = self._keys(record)
        meta = {"category": category, "image": image_id, "group": f"{category}/{image_id}"}
        image = record_image(record, self.ctx.images)
        return [self.ctx.item(record, question=question, references=[answer], fields={"question": question},
                              image=image, meta=meta)]
