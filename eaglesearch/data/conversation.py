"""Turn a conversation into token ids and labels, with the ``<image>`` placeholder expanded to visual-token slots.

A conversation template (:mod:`eaglesearch.data.templates`, ``data.template``; ChatML by default) renders the
turns as segments: context (system text, user turns, role headers) and targets (each assistant answer and its end
marker). Each segment is tokenised separately; labels are -100 except on target tokens, so the loss covers EVERY
assistant turn of a multi-turn conversation and nothing else. The prompt used for generation
(:func:`encode_prompt`) is built from exactly the same segments, so a model sees at inference the very token
sequence it was trained on. Samples are never truncated: a sample longer than ``max_length`` is a
:class:`~eaglesearch.data.llava.DataProblem` naming it (``too_long``), like every other reason a sample cannot be
trained on; :mod:`eaglesearch.data.policy` decides whether that stops the run or skips (and counts) the sample.
"""

from __future__ import annotations

from collections.abc import Iterable

from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from eaglesearch.data.llava import DataProblem, Sample
from eaglesearch.data.templates import ChatTemplate, Segment, get_template
from eaglesearch.model.tokenizer import IMAGE_TOKEN

IGNORE_INDEX = -100
Turns = list[tuple[str, str]]
TemplateArg = str | ChatTemplate


def turns_with_image(sample: Sample) -> Turns:
    """The sample's turns with exactly one ``<image>`` placeholder if it has an image (prepended to the first user
    turn when the text has none), and none otherwise."""
    turns = list(sample.turns)
    if not turns:
        raise DataProblem("malformed", sample.id,
                          f"{sample.name} has no turns; a conversation needs at least a user turn")
    found = sum(text.count(IMAGE_TOKEN) for _, text in turns)
    if sample.image is None:
        if found:
            raise DataProblem("malformed", sample.id, f"{sample.name} has '{IMAGE_TOKEN}' in its text but no image; "
                              "add an image or remove the placeholder")
        return turns
    if found > 1:
        raise DataProblem("malformed", sample.id, f"{sample.name} has {found} '{IMAGE_TOKEN}' placeholders; one "
                          "image per sample is supported, so keep a single placeholder")
    if found == 0:
        role, text = turns[0]
        turns[0] = (role, f"{IMAGE_TOKEN}\n{text}")
    return turns


def training_corpus(samples: Iterable[Sample], *, template: TemplateArg = "chatml") -> list[str]:
    """The conversations rendered with ``template``: the text the offline BPE tokenizer is trained on.

    Answers end with ``<|im_end|>`` where the template uses the tokenizer's eos (the offline tokenizer's). A sample
    that cannot be rendered is left out here; training reports it (or stops on it) per ``data.on_problem``.
    """
    chat = get_template(template)
    corpus = []
    for sample in samples:
        try:
            turns = turns_with_image(sample)
        except DataProblem:
            continue
        if chat.misfit(turns, sample.image is not None) is None:
            corpus.append(chat.render(turns))
    return corpus


def _encode_texts(tokenizer: PreTrainedTokenizerBase, texts: list[str]) -> list[list[int]]:
    """Each text's ids without special tokens. A fast tokenizer whose backend neither truncates nor pads is called
    directly: the ids are the same, and the wrapper's per-call work was 3/4 of building a paper-size index
    (measured with ``benchmarks/data_pipeline.py``)."""
    if _plain_backend(tokenizer):
        backend = tokenizer.backend_tokenizer  # type: ignore[attr-defined]
        return [backend.encode(text, add_special_tokens=False).ids for text in texts]  # batching helps nothing here
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


def _plain_backend(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether calling the tokenizer is exactly its backend's ``encode``: a ``PreTrainedTokenizerFast`` whose class
    keeps the base encoding path, with no truncation, padding or special-token splitting set on the backend (what
    the wrapper would reset before encoding)."""
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        return False
    kind, base = type(tokenizer), PreTrainedTokenizerFast
    if kind.__call__ is not base.__call__ or kind._encode_plus is not base._encode_plus:  # type: ignore[attr-defined]
        return False
    backend = tokenizer.backend_tokenizer
    return (backend.truncation is None and backend.padding is None
            and backend.encode_special_tokens == bool(getattr(tokenizer, "split_special_tokens", False)))


def _tokenize(tokenizer: PreTrainedTokenizerBase, segments: list[Segment]) -> tuple[list[int], list[int]]:
    ids: list[int] = []
    labels: list[int] = []
    pieces = _encode_texts(tokenizer, [text for text, _ in segments]) if segments else []
    for (_, is_target), piece in zip(segments, pieces, strict=True):
        ids += piece
        labels += piece if is_target else [IGNORE_INDEX] * len(piece)
    return ids, labels


def _expand_image(tokenizer: PreTrainedTokenizerBase, sample: Sample, ids: list[int], labels: list[int],
                  num_visual_tokens: int) -> tuple[list[int], list[int]]:
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    positions = [i for i, t in enumerate(ids) if t == image_id]
    expected = 0 if sample.image is None else 1
    if len(positions) != expected:
        raise ValueError(f"{sample.name}: expected {expected} '{IMAGE_TOKEN}' token(s) after tokenisation, "
                         f"found {len(positions)}; the tokenizer must treat '{IMAGE_TOKEN}' as one special token "
                         "(load it with eaglesearch.model.load_tokenizer)")
    if not positions:
        return ids, labels
    p = positions[0]
    return (ids[:p] + [image_id] * num_visual_tokens + ids[p + 1:],
            labels[:p] + [IGNORE_INDEX] * num_visual_tokens + labels[p + 1:])


def encode_for_training(tokenizer: PreTrainedTokenizerBase, sample: Sample, num_visual_tokens: int,
                        max_length: int, *, template: TemplateArg = "chatml") -> tuple[list[int], list[int]]:
    """(input_ids, labels) for a whole conversation; loss only on the answers and their end markers.

    Raises :class:`DataProblem` (a ``ValueError``) of kind ``malformed``, ``no_answer``, ``template``,
    ``no_target`` or ``too_long``.
    """
    chat = get_template(template, tokenizer)
    turns = turns_with_image(sample)
    if not any(role == "assistant" for role, _ in turns):
        raise DataProblem("no_answer", sample.id, f"{sample.name} has no assistant turn, so nothing to train on; "
                          "add the answer or remove the sample")
    if turns[-1][0] != "assistant":
        raise DataProblem("no_answer", sample.id, f"{sample.name} does not end with an assistant answer (its last "
                          "user turn is unanswered); training needs one — add the answer or drop the last turn")
    misfit = chat.misfit(turns, sample.image is not None)
    if misfit is not None:
        raise DataProblem("template", sample.id, f"{sample.name}: {misfit}")
    if all(not text.strip() for role, text in turns if role == "assistant"):
        raise DataProblem("no_target", sample.id, f"{sample.name} has only empty answers: it would teach nothing "
                          "but the end marker; fill in the answers or remove the sample")
    ids, labels = _tokenize(tokenizer, chat.segments(turns, eos=tokenizer.eos_token))
    ids, labels = _expand_image(tokenizer, sample, ids, labels, num_visual_tokens)
    if len(ids) > max_length:
        visual = num_visual_tokens if sample.image is not None else 0
        raise DataProblem("too_long", sample.id,
                          f"{sample.name} is {len(ids)} tokens ({visual} visual + {len(ids) - visual} text), "
                          f"over max_length {max_length}; raise data.max_length or shorten the sample (samples are "
                          "never truncated, so no answer is silently dropped)")
    if all(label == IGNORE_INDEX for label in labels):
        raise DataProblem("no_target", sample.id, f"{sample.name} has no supervised token (every label is "
                          f"{IGNORE_INDEX}), so its loss would be zero; check the template and the answers")
    return ids, labels


def encode_prompt(tokenizer: PreTrainedTokenizerBase, sample: Sample, num_visual_tokens: int, *,
                  template: TemplateArg = "chatml") -> list[int]:
    """Token ids of every turn but the final answer, ending with the template's generation prompt (ChatML:
    ``<|im_start|>assistant\\n``)."""
    chat = get_template(template, tokenizer)
    turns = turns_with_image(sample)
    if turns and turns[-1][0] == "assistant":
        turns = turns[:-1]
    ids, labels = _tokenize(tokenizer, chat.segments(turns, eos=tokenizer.eos_token, generation_prompt=True))
    return _expand_image(tokenizer, sample, ids, labels, num_visual_tokens)[0]


def reference_answer(sample: Sample) -> str:
    """The final assistant turn: what a prediction is scored against."""
    if not sample.turns or sample.turns[-1][0] != "assistant":
        raise ValueError(f"{sample.name} does not end with an assistant answer, so it has no reference")
    return sample.turns[-1][1]
