"""LLaVA conversation loader: the ``llava`` kind and eaglesearch's synthetic benchmark (same format).

::

    [{"id": "count-eval-00000", "image": "eval/count_00000.png",
      "conversations": [{"from": "human", "value": "<image>\\nHow many shapes are there?"},
                        {"from": "gpt", "value": "3"}]}]

Each record is one question: exactly one user turn (roles ``human``/``user``) followed by one assistant turn
(``gpt``/``assistant``), whose text — the last assistant turn — is the reference. A :class:`BenchmarkItem` holds a
single question, so multi-turn conversations are an error rather than silently losing their earlier turns. The
prompt is the user turn as written (its ``<image>`` placeholder removed: the evaluator places the image). ``image``
is a path relative to the image folder; ``id`` is the record's id (else its position); ``category`` (or ``task``),
when present, goes to ``meta["category"]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eaglesearch.data.llava import ROLES
from eaglesearch.evaluate.benchmarks.formats import Record
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.prompts import clean_question
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext

EXPECTED_ROLES = ("user", "assistant")


class ConversationLoader:
    id_fields = ("id",)

    def __init__(self, ctx: LoadContext) -> None:
        if ctx.table.format not in ("json", "jsonl"):
            raise ValueError(f"{ctx.table.path}: LLaVA conversations are json (a list of records with "
                             f"'conversations'); got a {ctx.table.format} file — pick the kind for its benchmark")
        self.ctx = ctx

    def keep(self, record: Record) -> bool:
        return True

    def group_key(self, record: Record) -> str:
        return record.key

    def items(self, record: Record) -> list[BenchmarkItem]:
        question, reference = self._turns(record)
        meta = {} if (category := record.optional_text("category", "task")) is None else {"category": category}
        image = record_image(record, self.ctx.images)
        return [self.ctx.item(record, question=question, references=[reference], fields={"question": question},
                              image=image, meta=meta)]

    def _turns(self, record: Record) -> tuple[str, str]:
        conversations = record.require("conversations", fix='add "conversations": [{"from": "human", "value": '
                                       '...}, {"from": "gpt", "value": ...}]')
        if not isinstance(conversations, list):
            raise record.error(f"'conversations' is a {type(conversations).__name__}; it must be a list of turns")
        roles = []
        for t, turn in enumerate(conversations):
            if not isinstance(turn, dict) or not isinstance(turn.get("value"), str) or turn.get("from") not in ROLES:
                shown = repr(turn) if len(repr(turn)) <= 120 else repr(turn)[:117] + "..."
                raise record.error(f"turn {t} must be an object with a string 'value' and 'from' one of "
                                   f"{sorted(ROLES)}; got {shown}")
            roles.append(ROLES[turn["from"]])
        if tuple(roles) != EXPECTED_ROLES:
            raise record.error(f"has turns {roles}; a benchmark question is one user turn then one assistant turn "
                               "(the reference) — split multi-turn conversations into single-turn records")
        question = clean_question(conversations[0]["value"])
        if not question:
            raise record.error("the user turn has no text besides the image placeholder; add the question")
        return question, conversations[1]["value"]
