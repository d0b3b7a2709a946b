"""Conversation templates: exact renderings, label masks (targets = answers + end markers) and prompt prefixes."""

from __future__ import annotations

import os
from itertools import pairwise

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from eaglesearch.data import (
    IGNORE_INDEX,
    TEMPLATES,
    ChatTemplate,
    DataProblem,
    Sample,
    encode_for_training,
    encode_prompt,
    get_template,
    training_corpus,
)
from eaglesearch.data.templates import EAGLE_SYSTEM
from eaglesearch.model import IMAGE_TOKEN, load_tokenizer
from eaglesearch.model.tokenizer import render_chat, render_chatml
from eaglesearch.spec import DataSpec, TokenizerSpec

torch.set_num_threads(1)

IMAGE = Path("scene.png")  # encoding never opens the image
N_VISUAL = 4
TWO_ROUNDS = Sample("two", IMAGE, (("user", "<image>\nHow many circles?"), ("assistant", "2"),
                                   ("user", "And red ones?"), ("assistant", "one red circle")))
CAPTION = Sample("cap", IMAGE, (("user", "<image>\nDescribe the image briefly."), ("assistant", "a red circle")))
# the sample each template is exercised on: plain (pre-training) takes one image and one caption
SAMPLES = {"chatml": TWO_ROUNDS, "vicuna_v1": TWO_ROUNDS, "llama3": TWO_ROUNDS, "plain": CAPTION}

SYS = EAGLE_SYSTEM
EXPECTED = {
    "chatml": ("<|im_start|>user\n<image>\nHow many circles?<|im_end|>\n<|im_start|>assistant\n2<|im_end|>\n"
               "<|im_start|>user\nAnd red ones?<|im_end|>\n<|im_start|>assistant\none red circle<|im_end|>\n"),
    "vicuna_v1": (f"{SYS} USER: <image>\nHow many circles? ASSISTANT: 2<|im_end|>USER: And red ones? ASSISTANT: "
                  "one red circle<|im_end|>"),
    "llama3": (f"<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{SYS}<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\n<image>\nHow many circles?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\n2<|eot_id|>"
               "<|start_header_id|>user<|end_header_id|>\n\nAnd red ones?<|eot_id|>"
               "<|start_header_id|>assistant<|end_header_id|>\n\none red circle<|eot_id|>"),
    "plain": "<image>a red circle\n",
}
# every contiguous run of target tokens, decoded: the answers with their end markers, nothing else
TARGET_RUNS = {
    "chatml": ["2<|im_end|>", "one red circle<|im_end|>"],
    "vicuna_v1": [" 2<|im_end|>", " one red circle<|im_end|>"],
    "llama3": ["2<|eot_id|>", "one red circle<|eot_id|>"],
    "plain": ["a red circle\n"],
}
PROMPT_ENDS = {  # the generation prompt after the first round (what inference feeds before the last answer)
    "chatml": "And red ones?<|im_end|>\n<|im_start|>assistant\n",
    "vicuna_v1": "USER: And red ones? ASSISTANT:",
    "llama3": "And red ones?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "plain": IMAGE_TOKEN * N_VISUAL,
}


@pytest.fixture(scope="module")
def tokenizer():
    """The offline BPE, trained (as in a trial) on ChatML text: only ChatML's markers are special tokens."""
    corpus = training_corpus([TWO_ROUNDS, CAPTION] * 4 + [
        Sample(f"s{i}", IMAGE, (("user", f"What colour is shape {i}?"), ("assistant", c)))
        for i, c in enumerate(["red", "green", "blue", "yellow"])])
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: corpus)


def _runs(ids: list[int], labels: list[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    previous = False
    for token, label in zip(ids, labels, strict=True):
        target = label != IGNORE_INDEX
        if target and not previous:
            runs.append([])
        if target:
            runs[-1].append(token)
        previous = target
    return runs


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_rendering_is_exact(name: str, tokenizer) -> None:
    turns = list(SAMPLES[name].turns)
    assert TEMPLATES[name].render(turns, eos=tokenizer.eos_token) == EXPECTED[name]
    segments = TEMPLATES[name].segments(turns, eos=tokenizer.eos_token)
    assert "".join(text for text, _ in segments) == EXPECTED[name]
    assert all(text for text, _ in segments)  # no empty segments
    for (_, a), (_, b) in pairwise(segments):
        assert a or b  # context is merged: never two context segments in a row


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_labels_cover_exactly_the_answers_and_end_markers(name: str, tokenizer) -> None:
    sample = SAMPLES[name]
    ids, labels = encode_for_training(tokenizer, sample, N_VISUAL, max_length=400, template=name)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    assert len(ids) == len(labels) and ids.count(image_id) == N_VISUAL
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(ids, labels, strict=True))
    assert all(label == IGNORE_INDEX for token, label in zip(ids, labels, strict=True) if token == image_id)
    assert [tokenizer.decode(run) for run in _runs(ids, labels)] == TARGET_RUNS[name]
    # the context decodes to the rendering minus the targets: nothing of a question leaks into the loss
    context = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label == IGNORE_INDEX])
    expected_context = EXPECTED[name]
    for run in TARGET_RUNS[name]:
        expected_context = expected_context.replace(run, "", 1)
    assert context == expected_context.replace(IMAGE_TOKEN, IMAGE_TOKEN * N_VISUAL)
    # inference sees exactly the training prefix, ending with the template's generation prompt
    prompt = encode_prompt(tokenizer, sample, N_VISUAL, template=name)
    assert prompt == ids[:len(prompt)] and labels[len(prompt)] != IGNORE_INDEX
    assert tokenizer.decode(prompt).endswith(PROMPT_ENDS[name])


@pytest.mark.parametrize("name", ["vicuna_v1", "llama3"])
def test_markers_the_tokenizer_lacks_are_ordinary_text(name: str, tokenizer) -> None:
    special = set(tokenizer.all_special_tokens)
    assert "<|im_end|>" in special and "<|eot_id|>" not in special and "<|start_header_id|>" not in special
    if name == "llama3":
        end_ids = tokenizer("<|eot_id|>", add_special_tokens=False)["input_ids"]
        assert len(end_ids) > 1  # several ordinary tokens, yet the runs above decode exactly
        ids, labels = encode_for_training(tokenizer, TWO_ROUNDS, N_VISUAL, 400, template=name)
        runs = _runs(ids, labels)
        assert all(run[-len(end_ids):] == end_ids for run in runs)  # the end marker has the same ids every time


def test_chatml_matches_the_tokenizer_chat_template(tokenizer) -> None:
    turns = list(TWO_ROUNDS.turns)
    chatml = TEMPLATES["chatml"]
    assert chatml.render(turns) == render_chatml(turns) == render_chat(tokenizer, turns)
    assert chatml.render(turns[:3], generation_prompt=True) == render_chat(tokenizer, turns[:3],
                                                                           add_generation_prompt=True)


def test_default_template_is_chatml(tokenizer) -> None:
    assert DataSpec().template == "chatml"
    assert encode_for_training(tokenizer, TWO_ROUNDS, N_VISUAL, 400) == encode_for_training(
        tokenizer, TWO_ROUNDS, N_VISUAL, 400, template="chatml")
    assert encode_prompt(tokenizer, TWO_ROUNDS, N_VISUAL) == encode_prompt(tokenizer, TWO_ROUNDS, N_VISUAL,
                                                                           template=TEMPLATES["chatml"])
    assert training_corpus([TWO_ROUNDS]) == [EXPECTED["chatml"]]
    with pytest.raises(ValidationError):
        DataSpec(template="mistral")
    with pytest.raises(ValueError, match="unknown conversation template 'mistral'"):
        get_template("mistral")


def test_vicuna_ends_answers_with_the_tokenizer_eos() -> None:
    turns = list(TWO_ROUNDS.turns)
    text = TEMPLATES["vicuna_v1"].render(turns, eos="</s>", generation_prompt=False)
    assert text.endswith("ASSISTANT: 2</s>USER: And red ones? ASSISTANT: one red circle</s>")
    assert TEMPLATES["vicuna_v1"].render(turns[:1], eos="</s>", generation_prompt=True) == (
        f"{SYS} USER: <image>\nHow many circles? ASSISTANT:")  # LLaVA's v1 prompt, no trailing space
    with pytest.raises(ValueError, match="tokenizer has none"):
        TEMPLATES["vicuna_v1"].render(turns, eos=None)


def test_every_assistant_turn_of_a_long_conversation_is_supervised(tokenizer) -> None:
    answers = ["2", "red", "yes", "no", "blue"]
    turns = tuple(t for i, a in enumerate(answers) for t in (("user", f"Question {i}?"), ("assistant", a)))
    for name in ("chatml", "vicuna_v1", "llama3"):
        ids, labels = encode_for_training(tokenizer, Sample("long", IMAGE, turns), N_VISUAL, 800, template=name)
        end = TEMPLATES[name].end_marker(tokenizer.eos_token)
        prefix = TEMPLATES[name].answer_prefix
        assert [tokenizer.decode(r) for r in _runs(ids, labels)] == [f"{prefix}{a}{end}" for a in answers]


def test_text_only_conversations_encode_without_image_tokens(tokenizer) -> None:
    text_only = Sample("txt", None, (("user", "Name a colour."), ("assistant", "red")))
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for name in ("chatml", "vicuna_v1", "llama3"):
        ids, labels = encode_for_training(tokenizer, text_only, N_VISUAL, 400, template=name)
        assert image_id not in ids
        assert [tokenizer.decode(r) for r in _runs(ids, labels)] == [
            f"{TEMPLATES[name].answer_prefix}red{TEMPLATES[name].end_marker(tokenizer.eos_token)}"]


def test_plain_takes_one_image_and_one_caption(tokenizer) -> None:
    with pytest.raises(DataProblem, match="template 'plain' takes 1 answer") as err:
        encode_for_training(tokenizer, TWO_ROUNDS, N_VISUAL, 400, template="plain")
    assert err.value.kind == "template" and err.value.sample_id == "two"
    text_only = Sample("txt", None, (("user", "Name a colour."), ("assistant", "red")))
    with pytest.raises(DataProblem, match="needs an image") as err:
        encode_for_training(tokenizer, text_only, N_VISUAL, 400, template="plain")
    assert err.value.kind == "template"
    # the question is dropped, as in LLaVA's preprocess_plain, and the corpus leaves the misfits out
    assert training_corpus([CAPTION, TWO_ROUNDS, text_only], template="plain") == ["<image>a red circle\n"]
    assert training_corpus([TWO_ROUNDS], template="vicuna_v1") == [EXPECTED["vicuna_v1"]]  # offline eos


def test_a_sample_with_no_target_token_is_a_problem(tokenizer) -> None:
    class NoTargets(ChatTemplate):
        def segments(self, turns, *, eos="<|im_end|>", generation_prompt=False):
            return [(text, False) for text, _ in super().segments(turns, eos=eos,
                                                                  generation_prompt=generation_prompt)]

    with pytest.raises(DataProblem, match="every label is -100") as err:
        encode_for_training(tokenizer, CAPTION, N_VISUAL, 400, template=NoTargets(name="broken", end="\n"))
    assert err.value.kind == "no_target"
