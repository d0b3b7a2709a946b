"""OCRBench (v1) loader: 1000 OCR questions in 10 question types, each with a list of accepted answers.

Columns, by source: id ``id`` (OCRBench's own json) / ``index`` (VLMEvalKit) / ``question_id``, else the record's
position; question ``question``; answers ``answer`` (lmms-lab/echo840 parquet: a list; VLMEvalKit: ``str(list)``) or
``answers`` (OCRBench json; a list or one string); question type ``question_type`` (lmms-lab), ``type`` (OCRBench
json) or ``category`` (VLMEvalKit); source dataset ``dataset`` (lmms-lab) or ``dataset_name`` (OCRBench json),
optional. Image: ``image`` (bytes / base64) or ``image_path`` (OCRBench json, relative to the image folder).

``meta["category"]`` = question type (the OCRBench metric reports a count per type and applies the handwritten-
math rule to "Handwritten Mathematical Expression Recognition"); ``meta["dataset"]`` = source dataset when known
(lmms-eval picks the math rule by ``dataset == "HME100k"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.evaluate.benchmarks.formats import Record
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext


class OCRBenchLoader:
    id_fields = ("id", "index", "question_id")

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question = record.text("question", fix="add the question text")
        answers = record.text_list("answer", "answers", fix="add the accepted answers (a list of strings)")
        meta = {"category": record.text("question_type", "type", "category",
                                        fix="add the OCRBench question type (e.g. 'Regular Text Recognition')")}
        if (dataset := record.optional_text("dataset", "dataset_name")) is not None:
            meta["dataset"] = dataset
        image = record_image(record, self.ctx.images)
        return [self.ctx.item(record, question=question, references=answers, fields={"question": question},
                              image=image, meta=meta)]
