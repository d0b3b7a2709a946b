"""GQA (testdev-balanced) loader: compositional questions with one short answer.

Sources: lmms-lab/GQA ``testdev_balanced_instructions`` parquet (``id``, ``imageId``, ``question``, ``answer``,
``types``) whose images live in a separate parquet table (``testdev_balanced_images``: ``id``, ``image``) — pass
that table (file or shard directory) as the image folder; GQA's own ``testdev_balanced_questions.json`` (an
object id → record; images ``<imageId>.jpg`` in the image folder); LLaVA's question jsonl (``question_id``,
``image``, ``text`` with the instruction embedded, which is cut off) when an ``answer`` column has been added.

``meta["image"]`` = ``imageId`` when present; ``meta["category"]`` = the structural type (verify, query, choose,
logical, compare) when the record has GQA's ``types`` object, and ``meta["semantic"]`` its semantic type.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.evaluate.benchmarks.formats import Record, scalar_text
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.prompts import SHORT_ANSWER, clean_question
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext


class GQALoader:
    id_fields = ("question_id", "id", "questionId", "index")

    def __init__(self, ctx: LoadContext) -> None:
        self.ctx = ctx

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question = clean_question(record.text("question", "text", fix="add the question text"), SHORT_ANSWER)
        answer = record.text("answer", fix="local scoring needs the balanced testdev questions with answers")
        meta: dict[str, str] = {}
        if (image_id := record.optional_text("imageId", "image_id")) is not None:
            meta["image"] = image_id
        types = record.get("types")
        if isinstance(types, dict):
            if types.get("structural"):
                meta["category"] = scalar_text(types["structural"])
            if types.get("semantic"):
                meta["semantic"] = scalar_text(types["semantic"])
        image = record_image(record, self.ctx.images, ("imageId", "image_id"))
        return [self.ctx.item(record, question=question, references=[answer], fields={"question": question},
                              image=image, meta=meta)]
