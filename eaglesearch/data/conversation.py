"""Turn a conversation into token ids and labels, with the ``<image>`` placeholder expanded to visual-token slots.

The rendered chat is tokenised in segments: every prompt part (user turns plus the template's
``<|im_start|>assistant\\n``) and every answer part (the answer text and its end token) separately. The prompt
used for generation (:func:`encode_prompt`) is built from exactly the same segments, so a model sees at inference
the very token sequence it was trained on. Labels are -100 except on answer tokens and their end token (the
tokenizer's ``eos_token``, ``<|im_end|>`` for ChatML); anything the template adds after the end token is ignored.
Samples are never truncated: a sample longer than ``max_length`` is an error naming it.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerBase

from eaglesearch.data.llava import Sample
from eaglesearch.model.tokenizer import IMAGE_TOKEN, render_chat, render_chatml

IGNORE_INDEX = -100
Turns = list[tuple[str, str]]


def turns_with_image(sample: Sample) -> Turns:
    """The sample's turns with exactly one ``<image>`` placeholder if it has an image (prepended to the first user
    turn when the text has none), and none otherwise."""
    turns = list(sample.turns)
    if not turns:
        raise ValueError(f"sample {sample.id!r} has no turns; a conversation needs at least a user turn")
    found = sum(text.count(IMAGE_TOKEN) for _, text in turns)
    if sample.image is None:
        if found:
            raise ValueError(f"sample {sample.id!r} has '{IMAGE_TOKEN}' in its text but no image; add an image or "
                             "remove the placeholder")
        return turns
    if found > 1:
        raise ValueError(f"sample {sample.id!r} has {found} '{IMAGE_TOKEN}' placeholders; one image per sample is "
                         "supported, so keep a single placeholder")
    if found == 0:
        role, text = turns[0]
        turns[0] = (role, f"{IMAGE_TOKEN}\n{text}")
    return turns


def training_corpus(samples: Iterable[Sample]) -> list[str]:
    """ChatML-rendered conversations: the text the offline BPE tokenizer is trained on."""
    return [render_chatml(turns_with_image(sample)) for sample in samples]


def _segments(tokenizer: PreTrainedTokenizerBase, turns: Turns, generation_prompt: bool) -> list[tuple[str, bool]]:
    """(text, is_answer) pieces whose concatenation is the rendered chat (plus a generation prompt if asked)."""
    segments: list[tuple[str, bool]] = []
    consumed = ""
    for i, (role, _) in enumerate(turns):
        if role != "assistant":
            continue
        prompt = render_chat(tokenizer, turns[:i], add_generation_prompt=True)
        full = render_chat(tokenizer, turns[: i + 1])
        if not (prompt.startswith(consumed) and full.startswith(prompt)):
            raise ValueError("the tokenizer's chat template does not render conversations prefix-consistently; "
                             "use a ChatML-style template (eaglesearch.model.tokenizer.CHATML_TEMPLATE)")
        segments.append((prompt[len(consumed):], False))
        answer = full[len(prompt):]
        cut = answer.find(tokenizer.eos_token) if tokenizer.eos_token else -1
        end = cut + len(tokenizer.eos_token) if cut >= 0 else len(answer)
        segments += [(answer[:end], True), (answer[end:], False)]
        consumed = full
    rest = render_chat(tokenizer, turns, add_generation_prompt=generation_prompt) if turns else ""
    segments.append((rest[len(consumed):], False))
    return [(text, is_answer) for text, is_answer in segments if text]


def _tokenize(tokenizer: PreTrainedTokenizerBase, segments: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    for text, is_answer in segments:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if is_answer else [IGNORE_INDEX] * len(piece)
    return ids, labels


def _expand_image(tokenizer: PreTrainedTokenizerBase, sample: Sample, ids: list[int], labels: list[int],
                  num_visual_tokens: int) -> tuple[list[int], list[int]]:
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    positions = [i for i, t in enumerate(ids) if t == image_id]
    expected = 0 if sample.image is None else 1
    if len(positions) != expected:
        raise ValueError(f"sample {sample.id!r}: expected {expected} '{IMAGE_TOKEN}' token(s) after tokenisation, "
                         f"found {len(positions)}; the tokenizer must treat '{IMAGE_TOKEN}' as one special token "
                         "(load it with eaglesearch.model.load_tokenizer)")
    if not positions:
        return ids, labels
    p = positions[0]
    return (ids[:p] + [image_id] * num_visual_tokens + ids[p + 1:],
            labels[:p] + [IGNORE_INDEX] * num_visual_tokens + labels[p + 1:])


def encode_for_training(tokenizer: PreTrainedTokenizerBase, sample: Sample, num_visual_tokens: int,
                        max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for a whole conversation; loss only on answers and their end token."""
    turns = turns_with_image(sample)
    if not turns or turns[-1][0] != "assistant":
        raise ValueError(f"sample {sample.id!r} does not end with an assistant answer; training needs one")
    ids, labels = _tokenize(tokenizer, _segments(tokenizer, turns, generation_prompt=False))
    ids, labels = _expand_image(tokenizer, sample, ids, labels, num_visual_tokens)
    if len(ids) > max_length:
        visual = num_visual_tokens if sample.image is not None else 0
        raise ValueError(f"sample {sample.id!r} is {len(ids)} tokens ({visual} visual + {len(ids) - visual} text), "
                         f"over max_length {max_length}; raise data.max_length or shorten the sample (samples are "
                         "never truncated, so no answer is silently dropped)")
    return ids, labels


def encode_prompt(tokenizer: PreTrainedTokenizerBase, sample: Sample, num_visual_tokens: int) -> list[int]:
    """Token ids of every turn but the final answer, ending with the generation prompt (``assistant\\n``)."""
    turns = turns_with_image(sample)
    if turns and turns[-1][0] == "assistant":
        turns = turns[:-1]
    ids, labels = _tokenize(tokenizer, _segments(tokenizer, turns, generation_prompt=True))
    return _expand_image(tokenizer, sample, ids, labels, num_visual_tokens)[0]


def reference_answer(sample: Sample) -> str:
    """The final assistant turn: what a prediction is scored against."""
    if not sample.turns or sample.turns[-1][0] != "assistant":
        raise ValueError(f"sample {sample.id!r} does not end with an assistant answer, so it has no reference")
    return sample.turns[-1][1]
