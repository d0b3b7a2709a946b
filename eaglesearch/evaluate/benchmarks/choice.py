"""Multiple-choice loader: SEED-Bench, ScienceQA-IMG, AI2D, and MMBench with circular evaluation.

Options, in the first layout the record has:

* letter columns ``A``, ``B``, ``C``, ... (VLMEvalKit tsv, lmms-lab/MMBench): consecutive from ``A``; an empty cell
  (or the text ``nan``, as some MMBench exports write) ends the list, and a later non-empty letter is an error;
* ``choice_a``, ``choice_b``, ... (lmms-lab/SEED-Bench, SEED-Bench.json);
* a list column ``choices`` (ScienceQA) or ``options`` (AI2D).

Answer (column ``answer``): an option letter (``"B"``); with list options also a 0-based index (ScienceQA's int,
AI2D's ``"1"``); else the exact text of exactly one option. The reference is the correct option's letter; the
options are ``item.choices`` (A, B, ... in order). Other columns: id ``index`` (VLMEvalKit, lmms-lab/MMBench) /
``question_id`` (SEED) / ``id``, else the position; question ``question`` or ``text``; hint ``hint`` (ScienceQA's
context, MMBench's hint; ``nan`` means none); ``meta["category"]`` from ``category`` (else SEED's
``question_type_id``), ``meta["l2_category"]`` from MMBench's ``l2-category``/``L2-category``.

SEED (``images_only``) keeps rows whose ``data_type`` is ``image`` (or absent): SEED-IMG, the number Eagle reports.
Image: ``image`` (bytes, base64, a one-frame list, or a path), else SEED-Bench.json's ``data_id`` (the file name
in the image folder).

MMBench circular evaluation (reference/metrics.md §5.8): a question with N options is asked N times, the options
rotated left by 0..N-1 (LLaVA ``model_vqa_mmbench.py --all-rounds``), and counts only if every pass is right. Pass
k of question ``i`` has ``index = i + k * 1_000_000`` (VLMEvalKit/lmms-eval storage convention). A file that already
holds the passes (any index ≥ 1,000,000) is used as is, with ``group = index % 1_000_000``; otherwise the passes are
generated here: pass k has id ``i + k * 1_000_000`` (``<id>+<k>`` for a non-integer id), the rotated options and
the letter the correct option moved to. Every pass has ``meta["group"]`` (the base question) and
``meta["circular_pass"]`` (k); ``limit`` keeps whole groups.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eaglesearch.evaluate.benchmarks.formats import Record, scalar_text
from eaglesearch.evaluate.benchmarks.images import record_image
from eaglesearch.evaluate.benchmarks.prompts import LETTER_ANSWER, clean_question, format_options
from eaglesearch.evaluate.items import BenchmarkItem

if TYPE_CHECKING:
    from eaglesearch.evaluate.benchmarks.registry import LoadContext

CIRCULAR_STRIDE = 1_000_000
LETTERS = tuple(chr(ord("A") + i) for i in range(26))
LIST_COLUMNS = ("choices", "options")
MISSING_TEXT = ("nan",)
IMAGE_ID_COLUMNS = ("data_id",)  # SEED-Bench.json names the image file in SEED-Bench-image/ by data_id


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, str) and value.strip().lower() in ("", *MISSING_TEXT))


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def read_options(record: Record) -> tuple[list[str], bool]:
    """The option texts in order, and whether they came from a list column (where index answers are allowed)."""
    for name in (lambda letter: letter, lambda letter: f"choice_{letter.lower()}"):
        columns = [name(letter) for letter in LETTERS]
        if not any(_present(record.data.get(c)) for c in columns):
            continue
        options = []
        for column in columns:
            if not _present(record.data.get(column)):
                break
            options.append(record.text(column).strip())
        later = [c for c in columns[len(options) + 1:] if _present(record.data.get(c))]
        if later:
            raise record.error(f"option {columns[len(options)]!r} is empty but {later[0]!r} is not; options must "
                               "be consecutive from the first letter")
        return options, False
    column = record.column(*LIST_COLUMNS)
    if column is not None:
        return [text.strip() for text in record.text_list(column)], True
    raise record.error("has no options; expected columns A, B, ... (VLMEvalKit), choice_a, choice_b, ... (SEED) "
                       "or a list column 'choices' / 'options'")


def answer_index(record: Record, options: list[str], from_list: bool) -> int:
    """0-based index of the correct option (see the module docstring for the accepted answer forms)."""
    raw = record.require("answer", fix="local scoring needs the annotated split (e.g. MMBench dev, not test)")
    text = scalar_text(raw).strip()
    n = len(options)
    if text in LETTERS[:n]:
        return LETTERS.index(text)
    index = _as_int(raw)
    if from_list and index is not None:
        if not 0 <= index < n:
            raise record.error(f"answer index {index} is out of range for {n} options (0-based)")
        return index
    if options.count(text) == 1:
        return options.index(text)
    accepted = f"a letter {LETTERS[0]}-{LETTERS[n - 1]}" + (f", an index 0-{n - 1}" if from_list else "")
    raise record.error(f"answer {text!r} is not one of its options; write {accepted} or an option's exact text")


def pass_id(key: str, k: int) -> str:
    """Id of circular pass ``k`` of the question with id ``key`` (pass 0 keeps the question's own id)."""
    base = _as_int(key)
    if base is not None and base >= 0:
        return str(base + k * CIRCULAR_STRIDE)
    return f"{key}+{k}" if k else key


class ChoiceLoader:
    id_fields = ("index", "question_id", "id")

    def __init__(self, ctx: LoadContext, *, circular: bool = False, images_only: bool = False) -> None:
        self.ctx = ctx
        self.circular = circular
        self.images_only = images_only
        indices = [_as_int(row.get("index")) for row in ctx.table.rows]
        self.expanded = circular and any(i is not None and i >= CIRCULAR_STRIDE for i in indices)

    def keep(self, record: Record) -> bool:
        data_type = record.optional_text("data_type")
        return not self.images_only or data_type is None or data_type.lower() == "image"

    def group_key(self, record: Record) -> str:
        return str(self._index(record) % CIRCULAR_STRIDE) if self.expanded else record.key

    def _index(self, record: Record) -> int:
        index = _as_int(record.data.get("index"))
        if index is None or index < 0:
            raise record.error("has no integer 'index', but the file holds circular passes (indices ≥ "
                               f"{CIRCULAR_STRIDE}); every row needs its index so its passes can be grouped")
        return index

    def items(self, record: Record) -> list[BenchmarkItem]:
        question = clean_question(record.text("question", "text", fix="add the question text"), LETTER_ANSWER)
        options, from_list = read_options(record)
        if len(options) < 2:
            raise record.error(f"has {len(options)} option(s); a multiple-choice question needs at least 2")
        correct = answer_index(record, options, from_list)
        hint = record.get("hint")
        hint = scalar_text(hint).strip() if _present(hint) else ""
        meta: dict[str, str] = {}
        if (category := record.optional_text("category", "question_type_id")) is not None:
            meta["category"] = category
        if (l2 := record.optional_text("l2-category", "L2-category")) is not None:
            meta["l2_category"] = l2
        image = record_image(record, self.ctx.images, IMAGE_ID_COLUMNS)

        def make(rotation: int, item_id: str, group: str | None, circular_pass: int) -> BenchmarkItem:
            rotated = options[rotation:] + options[:rotation]
            fields = {"question": question, "options": format_options(rotated), "hint": hint}
            extra = {} if group is None else {"group": group, "circular_pass": str(circular_pass)}
            return self.ctx.item(record, question=question, references=[LETTERS[(correct - rotation) % len(options)]],
                                 fields=fields, image=image, choices=rotated, meta={**meta, **extra},
                                 item_id=item_id)

        if not self.circular:
            return [make(0, record.key, None, 0)]
        if self.expanded:
            index = self._index(record)
            return [make(0, record.key, str(index % CIRCULAR_STRIDE), index // CIRCULAR_STRIDE)]
        return [make(k, pass_id(record.key, k), record.key, k) for k in range(len(options))]
