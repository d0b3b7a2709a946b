"""Open-answer VQA loaders: VQAv2, TextVQA, VizWiz (10 human answers), DocVQA, InfoVQA (answer list), ChartQA.

Columns, by harness (first listed wins when several are present):

* id: ``question_id`` (lmms-eval VQAv2/TextVQA/VizWiz, LLaVA), ``questionId`` (lmms-eval DocVQA/InfoVQA), ``id``,
  ``index`` (VLMEvalKit); else the record's position.
* question: ``question`` (lmms-eval, VLMEvalKit), ``text`` (LLaVA question files, whose embedded instruction and
  ``Reference OCR token:`` line are cut off: the prompt adds its own), ``query`` (ChartQA's own json).
* answers: ``answers`` (a list; VQAv2's list of ``{"answer": ...}`` objects), ``answer`` (VLMEvalKit's ``str(list)``
  cells; ChartQA's single answer), ``label`` (ChartQA's own json). VQAv2/TextVQA/VizWiz must have exactly 10 —
  VQA accuracy is defined over 10 annotators; a test split without answers is an error (it is server-scored).
* TextVQA OCR tokens (``textvqa_ocr``): ``ocr_tokens`` (a list, lmms-eval), else the tokens of a LLaVA question's
  ``Reference OCR token:`` line.

``meta["category"]`` is the breakdown a metric reports per category: the file's ``category``, else VQAv2's
``answer_type`` (yes/no, number, other); for ChartQA the split, ``human`` or ``augmented`` (from ``type`` =
``human_test``/``augmented_test`` in lmms-eval, a ``split`` column, or ChartQA's own file names
``test_human.json``/``test_augmented.json``), also in ``meta["split"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.evaluate.benchmarks.formats import Record, split_from_file_name
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.prompts import (
    OCR_REFERENCE,
    SHORT_ANSWER,
    SINGLE_WORD,
    UNANSWERABLE,
    clean_question,
)
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext

QUESTION_COLUMNS = ("question", "text", "query")
IMAGE_ID_COLUMNS = ("image_id", "imageId")
INSTRUCTIONS = (SHORT_ANSWER, SINGLE_WORD, UNANSWERABLE)
CARRIED = ("question_type", "answer_type", "image_id", "docId", "data_split")
CHARTQA_SPLITS = ("human", "augmented")


def split_question(record: Record) -> tuple[str, str | None]:
    """(the bare question, the OCR tokens of an embedded ``Reference OCR token:`` line or ``None``)."""
    text = record.text(*QUESTION_COLUMNS, fix="add the question text")
    text = clean_question(text, *INSTRUCTIONS)  # VizWiz's two instruction lines go in this order
    marker = f"\n{OCR_REFERENCE}"
    if marker in text:
        question, tokens = text.split(marker, 1)
        return question.rstrip(), tokens.strip()
    return text, None


def carried_meta(record: Record, columns: tuple[str, ...] = CARRIED) -> dict[str, str]:
    """The record's scalar values of ``columns`` (those it has), for meta."""
    return {c: v for c in columns if (v := record.optional_text(c)) is not None}


class VQALoader:
    """Open answers scored against an answer list (VQA accuracy with ``answers=10``, ANLS with ``answers=None``)."""

    id_fields = ("question_id", "questionId", "id", "index")

    def __init__(self, ctx: LoadContext, *, answers: int | None, ocr: bool = False) -> None:
        self.ctx = ctx
        self.answers = answers
        self.ocr = ocr

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question, embedded_tokens = split_question(record)
        answers = record.text_list("answers", "answer", fix="local scoring needs the annotated split (val); test "
                                   "splits are scored by the benchmark's server")
        if self.answers is not None and len(answers) != self.answers:
            raise record.error(f"has {len(answers)} answers; {self.ctx.kind!r} is scored by VQA accuracy over "
                               f"exactly {self.answers} human answers — use the official annotation file")
        meta = carried_meta(record)
        category = record.optional_text("category") or meta.get("answer_type")
        if category is not None:
            meta["category"] = category
        meta["ocr_tokens_in_prompt"] = str(self.ocr).lower()
        fields = {"question": question, "ocr_tokens": self._ocr_tokens(record, embedded_tokens)}
        image = record_image(record, self.ctx.images, IMAGE_ID_COLUMNS)
        return [self.ctx.item(record, question=question, references=answers, fields=fields, image=image, meta=meta)]

    def _ocr_tokens(self, record: Record, embedded: str | None) -> str:
        value = record.data.get("ocr_tokens")
        if isinstance(value, (list, tuple)):
            return ", ".join(str(token) for token in value)
        if isinstance(value, str) and value:
            return ", ".join(record.text_list("ocr_tokens"))
        if embedded is not None:
            return embedded
        if self.ocr:
            raise record.error(f"has no OCR tokens; {self.ctx.kind!r} puts them in the prompt — add an 'ocr_tokens' "
                               "list (lmms-lab/textvqa has one) or use kind 'textvqa' (no OCR tokens)")
        return ""


class ChartQALoader:
    """ChartQA: one answer (relaxed accuracy), and the split the question comes from (human / augmented)."""

    id_fields = ("question_id", "id", "index")

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx
        self.file_split = split_from_file_name(ctx.table.path, CHARTQA_SPLITS)

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question, _ = split_question(record)
        answers = record.text_list("answer", "label", "answers", fix="local scoring needs the annotated test split")
        split = self._split(record)
        image = record_image(record, self.ctx.images, IMAGE_ID_COLUMNS)
        return [self.ctx.item(record, question=question, references=answers, fields={"question": question},
                              image=image, meta={"category": split, "split": split})]

    def _split(self, record: Record) -> str:
        value = record.optional_text("type", "split")
        if value is None:
            if self.file_split is None:
                raise record.error("has no split; add a 'type' column (human_test / augmented_test, as lmms-lab/"
                                   "ChartQA) or name the file after its split (test_human.json / "
                                   "test_augmented.json, as ChartQA ships them)")
            return self.file_split
        found = [split for split in CHARTQA_SPLITS if split in value.lower()]
        if len(found) != 1:
            raise record.error(f"split {value!r} is neither human nor augmented; ChartQA's splits are human_test "
                               "and augmented_test")
        return found[0]
