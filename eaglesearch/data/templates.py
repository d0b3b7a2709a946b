r"""Conversation templates: how ``(role, text)`` turns become the text a model trains on, split into segments.

A template renders a conversation as ``(text, is_target)`` segments whose concatenation is the chat text. Targets
are exactly the assistant answers and the end marker after each (the loss is taken there, reference/eagle.md §1.4
and LLaVA's label masking); everything else — system text, user turns, role headers, the text after an end
marker — is context. The generation prompt is the same segments up to the next answer, so inference sees the
very tokens training saw.

* ``chatml`` (default): ``<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n``; end marker
  ``<|im_end|>``, the ``\n`` after it is context.
* ``plain`` (LLaVA pre-training): ``<image>A\n``; the user text is dropped (LLaVA's ``preprocess_plain``), one
  round per conversation, an image required; end marker ``\n``.
* ``vicuna_v1``: ``SYSTEM USER: Q ASSISTANT: A</s>USER: …``; the answer target is `` A`` (the space after
  ``ASSISTANT:`` belongs to it, as with LLaVA's tokenisation); end marker the tokenizer's eos token.
* ``llama3``: ``<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nSYSTEM<|eot_id|>`` then
  ``<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA``
  ``<|eot_id|>``; end marker ``<|eot_id|>``.

* ``tokenizer``: the tokenizer's own chat template (a pretrained LM's, e.g. SmolLM2's ChatML with its default
  system prompt), turned into the pieces above by rendering a probe conversation with it
  (:func:`from_tokenizer`); the end marker is the tokenizer's eos token. The offline BPE tokenizer's own template is
  ChatML, so its training corpus is rendered with ``chatml``.

``vicuna_v1`` and ``llama3`` follow Eagle's ``conv_vicuna_v1`` and ``conv_llama3`` (same system prompt). Markers
a tokenizer lacks as special tokens (``USER:``, ``<|eot_id|>`` with the offline BPE, which only knows ChatML's)
are tokenised as ordinary text; the masks do not depend on that, because each answer and each end marker is
its own target segment (tokenised on its own, so an end marker always has the same ids).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eaglesearch.model.special_tokens import IM_END, IM_START, IMAGE_TOKEN
from eaglesearch.spec.data import TemplateName

Segment = tuple[str, bool]
Turns = Sequence[tuple[str, str]]

EAGLE_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                "The assistant gives helpful, detailed, and polite answers to the user's questions.")


@dataclass(frozen=True)
class ChatTemplate:
    """One conversation format. A round renders as ``user_prefix Q user_suffix assistant_prefix`` (context),
    ``answer_prefix A`` and the end marker (targets), then ``after_end`` (context); ``system`` comes first."""

    name: str
    system: str = ""
    user_prefix: str = ""
    user_suffix: str = ""
    assistant_prefix: str = ""  # also the generation prompt
    answer_prefix: str = ""  # target text before each answer (vicuna_v1's space after "ASSISTANT:")
    end: str | None = None  # the end marker after each answer; None: the tokenizer's eos token
    after_end: str = ""
    image_only: bool = False  # plain: a user turn renders as its <image> placeholder alone (its text is dropped)
    max_rounds: int | None = None  # plain: one image, one caption
    needs_image: bool = False

    def end_marker(self, eos: str | None = IM_END) -> str:
        """The text ending every answer (a target). ``eos`` is the tokenizer's eos token; the default is the
        offline tokenizer's (``<|im_end|>``), used when rendering the corpus that tokenizer is trained on."""
        if self.end is not None:
            return self.end
        if not eos:
            raise ValueError(f"template {self.name!r} ends answers with the tokenizer's eos token, but the tokenizer "
                             "has none; set tokenizer.eos_token or use another template")
        return eos

    def misfit(self, turns: Turns, has_image: bool) -> str | None:
        """Why the conversation cannot be rendered with this template, or None if it can."""
        rounds = sum(role == "assistant" for role, _ in turns)
        if self.max_rounds is not None and rounds > self.max_rounds:
            return (f"template {self.name!r} takes {self.max_rounds} answer(s) per conversation (LLaVA pre-training: "
                    f"one image, one caption) but this one has {rounds}; use chatml, vicuna_v1 or llama3 for "
                    "multi-turn data")
        if self.needs_image and not has_image:
            return (f"template {self.name!r} needs an image (the caption is conditioned on it alone); use another "
                    "template for text-only samples")
        return None

    def segments(self, turns: Turns, *, eos: str | None = IM_END,
                 generation_prompt: bool = False) -> list[Segment]:
        """``(text, is_target)`` pieces whose concatenation is the rendered chat (plus the generation prompt if
        asked). Adjacent context is merged into one segment; every answer and every end marker is its own target
        segment. Turns must alternate user/assistant, starting with the user."""
        end = self.end_marker(eos)
        pieces: list[Segment] = [(self.system, False)]
        for role, text in turns:
            if role == "user":
                body = IMAGE_TOKEN * text.count(IMAGE_TOKEN) if self.image_only else text
                pieces.append((self.user_prefix + body + self.user_suffix, False))
            elif role == "assistant":
                pieces += [(self.assistant_prefix, False), (self.answer_prefix + text, True), (end, True),
                           (self.after_end, False)]
            else:
                raise ValueError(f"unknown role {role!r}; turns are (user|assistant, text)")
        if generation_prompt:
            pieces.append((self.assistant_prefix, False))
        merged: list[Segment] = []
        for text, is_target in pieces:
            if not text:
                continue
            if merged and not is_target and not merged[-1][1]:
                merged[-1] = (merged[-1][0] + text, False)
            else:
                merged.append((text, is_target))
        return merged

    def render(self, turns: Turns, *, eos: str | None = IM_END, generation_prompt: bool = False) -> str:
        """The chat text of ``turns`` (the concatenated segments)."""
        return "".join(text for text, _ in self.segments(turns, eos=eos, generation_prompt=generation_prompt))


TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate(
        name="chatml", user_prefix=f"{IM_START}user\n", user_suffix=f"{IM_END}\n",
        assistant_prefix=f"{IM_START}assistant\n", end=IM_END, after_end="\n"),
    "plain": ChatTemplate(name="plain", end="\n", image_only=True, max_rounds=1, needs_image=True),
    "vicuna_v1": ChatTemplate(
        name="vicuna_v1", system=EAGLE_SYSTEM + " ", user_prefix="USER: ", user_suffix=" ",
        assistant_prefix="ASSISTANT:", answer_prefix=" ", end=None),
    "llama3": ChatTemplate(
        name="llama3",
        system=f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{EAGLE_SYSTEM}<|eot_id|>",
        user_prefix="<|start_header_id|>user<|end_header_id|>\n\n", user_suffix="<|eot_id|>",
        assistant_prefix="<|start_header_id|>assistant<|end_header_id|>\n\n", end="<|eot_id|>"),
}


TOKENIZER = "tokenizer"
"""Template name: the tokenizer's own chat template (:func:`from_tokenizer`)."""


def get_template(template: TemplateName | str | ChatTemplate, tokenizer: Any = None) -> ChatTemplate:
    """The registered template of that name (or ``template`` itself if it already is one). ``tokenizer`` names
    the template ``tokenizer`` stands for; without one (the offline tokenizer's corpus) it is ChatML."""
    if isinstance(template, ChatTemplate):
        return template
    if template == TOKENIZER:
        return from_tokenizer(tokenizer) if tokenizer is not None else TEMPLATES["chatml"]
    try:
        return TEMPLATES[template]
    except KeyError:
        raise ValueError(f"unknown conversation template {template!r}; use one of "
                         f"{sorted([*TEMPLATES, TOKENIZER])}") from None


_PROBE = ("QqUserOneQq", "QqAnswerOneQq", "QqUserTwoQq", "QqAnswerTwoQq")  # mixed case: a rewrite shows


def from_tokenizer(tokenizer: Any) -> ChatTemplate:
    """The tokenizer's chat template as a :class:`ChatTemplate`: the text around the turns of a rendered
    two-round probe conversation gives the system text, the user/assistant prefixes and suffixes and, after the
    tokenizer's eos token, ``after_end``. Raises ``ValueError`` when the template is not of that shape (e.g. it
    rewrites the turns' text)."""
    chat_template = getattr(tokenizer, "chat_template", None)
    if not chat_template:
        raise ValueError("data.template is 'tokenizer' but the tokenizer has no chat template; choose chatml, "
                         "vicuna_v1 or llama3")
    return _derive(tokenizer, tokenizer.eos_token)


@lru_cache(maxsize=8)
def _derive_cached(eos: str, full: str, prompt: str) -> ChatTemplate:
    u1, a1, u2, a2 = _PROBE
    problem = "data.template 'tokenizer': the tokenizer's chat template"
    try:
        head, rest = full.split(u1)
        between, rest = rest.split(a1)
        gap, rest = rest.split(u2)
        between2, tail = rest.split(a2)
    except ValueError:
        raise ValueError(f"{problem} does not render each turn's text once, verbatim; choose chatml, vicuna_v1 or "
                         "llama3") from None
    if not eos or not tail.startswith(eos) or not gap.startswith(tail):
        raise ValueError(f"{problem} does not end each answer with the eos token {eos!r}; choose chatml, "
                         "vicuna_v1 or llama3")
    user_prefix = gap[len(tail):]
    if between != between2 or not head.endswith(user_prefix) or prompt != head + u1 + between:
        raise ValueError(f"{problem} renders rounds differently from one another (or its generation prompt "
                         "differs from the text before an answer); choose chatml, vicuna_v1 or llama3")
    template = ChatTemplate(name=TOKENIZER, system=head[:len(head) - len(user_prefix)], user_prefix=user_prefix,
                            assistant_prefix=between, end=eos, after_end=tail[len(eos):])
    rendered = template.render([("user", u1), ("assistant", a1), ("user", u2), ("assistant", a2)])
    if rendered != full:  # the pieces must rebuild exactly what the tokenizer renders
        raise ValueError(f"{problem} could not be split into system, turn and end pieces; choose chatml, "
                         "vicuna_v1 or llama3")
    return template


def _derive(tokenizer: Any, eos: str) -> ChatTemplate:
    u1, a1, u2, a2 = _PROBE
    turns = [{"role": "user", "content": u1}, {"role": "assistant", "content": a1},
             {"role": "user", "content": u2}, {"role": "assistant", "content": a2}]
    full = tokenizer.apply_chat_template(turns, tokenize=False)
    prompt = tokenizer.apply_chat_template(turns[:1], tokenize=False, add_generation_prompt=True)
    return _derive_cached(eos, str(full), str(prompt))
