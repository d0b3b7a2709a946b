"""POPE loader: yes/no questions about object presence, in three splits (random, popular, adversarial).

Columns: id ``question_id`` / ``id`` / ``index``; question ``question`` (lmms-lab/POPE, VLMEvalKit) or ``text``
(POPE's own ``coco_pope_<split>.json`` lines); answer ``answer`` or ``label``, "yes"/"no" in any case (VLMEvalKit
writes "Yes"), stored lower-case; split ``category``, else the file name (POPE ships one file per split,
``coco_pope_random.json`` ...). Image: ``image`` (a COCO file name in POPE's own files, bytes in lmms-lab's).

``meta["category"]`` holds the split (the POPE metric reports every rate per split); ``meta["image_source"]`` the
COCO image id when the file has it (lmms-lab).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.evaluate.benchmarks.formats import Record, split_from_file_name
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.prompts import SHORT_ANSWER, clean_question
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext

POPE_SPLITS = ("random", "popular", "adversarial")


def yes_no_answer(record: Record, *names: str) -> str:
    """The record's answer as ``"yes"`` or ``"no"`` (case and a trailing period ignored)."""
    value = record.text(*names, fix="add the ground-truth answer (yes/no)")
    answer = value.strip().lower().rstrip(".")
    if answer not in ("yes", "no"):
        raise record.error(f"answer {value!r} is not yes or no; a yes/no benchmark needs 'yes' or 'no' answers")
    return answer


class POPELoader:
    id_fields = ("question_id", "id", "index")

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.file_split = split_from_file_name(ctx.table.path, POPE_SPLITS)

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question = clean_question(record.text("question", "text", fix="add the question text"), SHORT_ANSWER)
        answer = yes_no_answer(record, "answer", "label")
        split = record.optional_text("category") or self.file_split
        if split is None:
            raise record.error("has no split; add a 'category' column (random / popular / adversarial) or name "
                               "the file after its split (coco_pope_random.json ...)")
        meta = {"category": split}
        if (source := record.optional_text("image_source")) is not None:
            meta["image_source"] = source
        image = record_image(record, self.ctx.images)
        return [self.ctx.item(record, question=question, references=[answer], fields={"question": question},
                              image=image, meta=meta)]
