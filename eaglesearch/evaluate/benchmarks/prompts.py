"""The standard prompt of every benchmark, and custom prompt templates.

A benchmark's score depends on the exact instruction the model is given (reference/codebases.md §7: MMBench moves
by 11 points with the instruction; TextVQA with or without OCR tokens are different benchmarks). The standard
prompts below are copied from the harness Eagle reports with — lmms-eval's task ``doc_to_text`` with its
``default`` ``pre_prompt``/``post_prompt`` (reference/eagle.md §6) — except MMBench, which follows LLaVA's (and
Eagle's own) ``model_vqa_mmbench.py --single-pred-prompt``, the script that defines the circular option rotation:

=================  ===================================================================================
kind               prompt (``\\n`` = newline; ``Q`` = the question as the file has it)
=================  ===================================================================================
vqav2              ``Q\\nAnswer the question using a single word or phrase.``
textvqa            ``Q.capitalize()\\nAnswer the question using a single word or phrase.`` (``ocr: false``)
textvqa_ocr        ``Q.capitalize()\\nReference OCR token: t1, t2, ...\\nAnswer the question using a single
                   word or phrase.`` (``ocr: true``, Eagle's vendored setting; LLaVA's prompt has the same shape)
vizwiz             ``Q.capitalize()\\nWhen the provided information is insufficient, respond with
                   'Unanswerable'.\\nAnswer the question using a single word or phrase.``
docvqa, infovqa    ``Q\\nAnswer the question using a single word or phrase.``
chartqa            ``Q\\nAnswer the question with a single word.`` (lmms-eval ≥ 0.2; 0.1 used the VQA suffix)
pope, gqa          ``Q\\nAnswer the question using a single word or phrase.`` (POPE strips Q)
mme                ``Q\\nAnswer the question using a single word or phrase.`` where Q loses its shipped
                   " Please answer yes or no." (lmms-eval ``mme_doc_to_text`` replaces it by the suffix)
ocrbench           ``Q`` stripped, nothing added
seed, ai2d         ``Q\\nA. ...\\nB. ...\\nAnswer with the option's letter from the given choices directly.``
scienceqa          ``Context: HINT\\n`` (only if there is a hint) + the seed/ai2d form
mmbench            ``HINT\\n`` (only if there is a hint) + the seed/ai2d form
llava, synthetic   the user turn as the file writes it (``<image>`` placeholder removed)
=================  ===================================================================================

``str.capitalize`` (TextVQA, VizWiz) also lower-cases the rest of the question; lmms-eval does exactly that.

A custom prompt is a :meth:`str.format` template over the fields the kind provides — always ``{question}``; multiple
choice adds ``{options}`` (the ``A. ...`` lines) and ``{hint}``; TextVQA adds ``{ocr_tokens}`` (comma-separated).
Every item records its style in ``meta["prompt_style"]`` and its exact prompt in ``item.prompt``.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

IMAGE_PLACEHOLDER = "<image>"
SHORT_ANSWER = "Answer the question using a single word or phrase."
SINGLE_WORD = "Answer the question with a single word."
LETTER_ANSWER = "Answer with the option's letter from the given choices directly."
UNANSWERABLE = "When the provided information is insufficient, respond with 'Unanswerable'."
MME_SHIPPED_SUFFIX = " Please answer yes or no."
OCR_REFERENCE = "Reference OCR token: "

Fields = Mapping[str, str]


@dataclass(frozen=True)
class PromptStyle:
    """How one kind turns an item's fields into the prompt: a name (recorded per item) and a builder."""

    name: str
    fields: tuple[str, ...]  # the fields this kind provides (what a custom template may use)
    build: Callable[[Fields], str]

    def render(self, fields: Fields) -> str:
        return self.build(fields)


def format_options(choices: Sequence[str]) -> str:
    """``A. first\\nB. second ...`` (no trailing newline)."""
    return "\n".join(f"{chr(ord('A') + i)}. {choice}" for i, choice in enumerate(choices))


def clean_question(text: str, *instructions: str) -> str:
    """The question without ``<image>`` placeholders and without a trailing copy of the kind's instruction.

    LLaVA question files write the full prompt into ``text`` (``"...?\\nAnswer the question using a single word or
    phrase."``); removing it keeps ``item.question`` the bare question and stops the instruction appearing twice.
    """
    text = text.replace(f"{IMAGE_PLACEHOLDER}\n", "").replace(f"\n{IMAGE_PLACEHOLDER}", "")
    text = text.replace(IMAGE_PLACEHOLDER, "").strip()
    for instruction in instructions:
        if text.endswith(instruction) and len(text) > len(instruction):
            text = text[: -len(instruction)].rstrip()
    return text


def custom_prompt(template: str, kind: str, fields: Sequence[str], required: Sequence[str]) -> PromptStyle:
    """A :meth:`str.format` template as a style, checked up front: known fields only, required ones present."""
    used: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ValueError(f"prompt template {template!r} for {kind!r} does not parse ({err}); write literal braces "
                         "as {{ and }}") from None
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in fields or spec or conversion:
            raise ValueError(f"prompt template {template!r} for {kind!r} uses {{{name}"
                             f"{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}; "
                             f"{kind!r} provides {', '.join('{' + f + '}' for f in fields)} (plain names only; "
                             "write literal braces as {{ and }})")
        used.add(name)
    missing = [f for f in required if f not in used]
    if missing:
        raise ValueError(f"prompt template {template!r} for {kind!r} must contain "
                         f"{', '.join('{' + f + '}' for f in missing)} (the model cannot answer without it)")
    return PromptStyle(name="custom", fields=tuple(fields), build=lambda f: template.format_map(f))


def _suffixed(name: str, suffix: str, capitalize: bool = False, strip: bool = False) -> PromptStyle:
    def build(f: Fields) -> str:
        q = f["question"].strip() if strip else f["question"]
        return f"{q.capitalize() if capitalize else q}\n{suffix}"
    return PromptStyle(name, ("question",), build)


def _textvqa(ocr: bool) -> PromptStyle:
    def build(f: Fields) -> str:
        reference = f"\n{OCR_REFERENCE}{f['ocr_tokens']}" if ocr else ""
        return f"{f['question'].capitalize()}{reference}\n{SHORT_ANSWER}"
    return PromptStyle(f"lmms-eval textvqa (ocr: {str(ocr).lower()})", ("question", "ocr_tokens"), build)


def _mme(f: Fields) -> str:
    return f"{f['question'].strip().replace(MME_SHIPPED_SUFFIX, '')}\n{SHORT_ANSWER}"


def _choice(name: str, hint_prefix: Callable[[str], str]) -> PromptStyle:
    def build(f: Fields) -> str:
        hint = f["hint"].strip()
        return f"{hint_prefix(hint) if hint else ''}{f['question']}\n{f['options']}\n{LETTER_ANSWER}"
    return PromptStyle(name, ("question", "options", "hint"), build)


VQAV2 = _suffixed("lmms-eval vqav2", SHORT_ANSWER)
TEXTVQA = _textvqa(ocr=False)
TEXTVQA_OCR = _textvqa(ocr=True)
VIZWIZ = _suffixed("lmms-eval vizwiz_vqa", f"{UNANSWERABLE}\n{SHORT_ANSWER}", capitalize=True)
DOCVQA = _suffixed("lmms-eval docvqa", SHORT_ANSWER)
INFOVQA = _suffixed("lmms-eval infovqa", SHORT_ANSWER)
CHARTQA = _suffixed("lmms-eval chartqa", SINGLE_WORD)
POPE = _suffixed("lmms-eval pope", SHORT_ANSWER, strip=True)
GQA = _suffixed("lmms-eval gqa", SHORT_ANSWER)
MME = PromptStyle("lmms-eval mme", ("question",), _mme)
OCRBENCH = PromptStyle("lmms-eval ocrbench", ("question",), lambda f: f["question"].strip())
SEED = _choice("lmms-eval seedbench", lambda hint: "")
AI2D = _choice("lmms-eval ai2d", lambda hint: "")
SCIENCEQA = _choice("lmms-eval scienceqa_img", lambda hint: f"Context: {hint}\n")
MMBENCH = _choice("llava model_vqa_mmbench --single-pred-prompt", lambda hint: f"{hint}\n")
AS_WRITTEN = PromptStyle("as written in the file", ("question",), lambda f: f["question"])
