"""Behaviour of eaglesearch.data: the synthetic writer, the LLaVA reader, label masking and collation."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import dataclasses
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from eaglesearch.data import (
    IGNORE_INDEX,
    Sample,
    TrainDataset,
    build_eval_items,
    collate_prompts,
    collate_train,
    encode_for_training,
    encode_prompt,
    load_image,
    read_llava_json,
    reference_answer,
    training_corpus,
    write_synthetic,
)
from eaglesearch.data.synthetic import COLORS, SHAPES, TASKS, render
from eaglesearch.model import IMAGE_TOKEN, load_tokenizer
from eaglesearch.spec import SyntheticDataSpec, TokenizerSpec

torch.set_num_threads(1)

SPEC = SyntheticDataSpec(train_per_task=25, eval_per_task=10, image_size=64, seed=7)
ANSWERS = {"count": {"1", "2", "3", "4", "5"}, "color": set(COLORS), "exist": {"yes", "no"},
           "detail": {"plus", "cross"}}
N_VISUAL = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic(SPEC, tmp_path_factory.mktemp("synthetic") / "ds")


@pytest.fixture(scope="module")
def train(dataset) -> list[Sample]:
    return read_llava_json(dataset.train_json, dataset.image_folder)


@pytest.fixture(scope="module")
def tokenizer(train):
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(train))


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _record(image: str | None = "a.png", conversations: object = "default", **extra: object) -> dict[str, object]:
    record: dict[str, object] = {"id": "r1", **extra}
    if image is not None:
        record["image"] = image
    if conversations == "default":
        conversations = [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "A"}]
    if conversations is not None:
        record["conversations"] = conversations
    return record


# ------------------------------------------------------------------------------------------- synthetic data


def test_synthetic_is_deterministic_and_idempotent(dataset, tmp_path: Path) -> None:
    again = write_synthetic(SPEC, tmp_path / "again")
    assert _files(dataset.root) == _files(again.root)  # identical json and image bytes
    stamp = again.train_json.stat().st_mtime_ns
    assert write_synthetic(SPEC, again.root) == again and again.train_json.stat().st_mtime_ns == stamp
    other = write_synthetic(SPEC.model_copy(update={"seed": 8}), tmp_path / "other")
    assert _files(other.root)["train.json"] != _files(again.root)["train.json"]
    with pytest.raises(ValueError, match="another spec"):
        write_synthetic(SPEC.model_copy(update={"seed": 8}), again.root)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left behind


def test_synthetic_round_trips_through_the_reader(dataset, train: list[Sample]) -> None:
    assert len(train) == len(SPEC.tasks) * SPEC.train_per_task
    assert set(dataset.eval_json) == set(SPEC.tasks)
    for task, path in dataset.eval_json.items():
        samples = read_llava_json(path, dataset.image_folder)
        assert len(samples) == SPEC.eval_per_task
        assert {reference_answer(s) for s in samples} <= ANSWERS[task]
    for sample in train:
        task = sample.id.split("-")[0]
        assert [r for r, _ in sample.turns] == ["user", "assistant"] and sample.turns[0][1].startswith(IMAGE_TOKEN)
        assert reference_answer(sample) in ANSWERS[task]
        assert load_image(sample.image, SPEC.image_size).shape == (3, SPEC.image_size, SPEC.image_size)
    for task in SPEC.tasks:  # every task shows more than one answer class
        assert len({reference_answer(s) for s in train if s.id.startswith(task)}) > 1


def test_train_and_eval_images_are_disjoint(dataset) -> None:
    def digests(split: str) -> set[str]:
        folder = dataset.image_folder / split
        return {hashlib.sha256(np.asarray(load_image(p, SPEC.image_size)).tobytes()).hexdigest()
                for p in folder.glob("*.png")}

    assert not digests("train") & digests("eval")


def test_detail_glyph_is_lost_at_quarter_resolution() -> None:
    scene, _, answer = TASKS["detail"](random.Random(0), 128)
    flipped = dataclasses.replace(scene, glyph=("cross" if answer == "plus" else "plus", *scene.glyph[1:]))
    a, b = (torch.from_numpy(np.asarray(render(s, 128)).copy()).permute(2, 0, 1)[None].float()
            for s in (scene, flipped))
    down = [F.interpolate(x, size=(32, 32), mode="bilinear", antialias=True) for x in (a, b)]
    assert (a - b).abs().max() > 150  # the classes are plainly different at the canvas resolution
    assert (down[0] - down[1]).abs().max() < 25  # and nearly identical after 4x downsampling
    assert SHAPES and all(s.kind in SHAPES for s in scene.shapes)


# ------------------------------------------------------------------------------------------------ reader


def test_reader_errors_name_file_record_and_fix(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    path = tmp_path / "data.json"
    cases = [
        ([_record(), _record(image="missing.png", id="r2")], r"record 1 \(id 'r2'\): image file .*missing.png"),
        ([_record(conversations=None)], r"record 0 \(id 'r1'\) has no 'conversations'"),
        ([_record(conversations=[{"from": "robot", "value": "x"}])], r"turn 0: unknown role 'robot'"),
        ([_record(conversations=[{"from": "gpt", "value": "x"}])], r"turn 0: expected a user turn"),
        ({"not": "a list"}, r"json list of records"),
    ]
    for content, pattern in cases:
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=pattern) as err:
            read_llava_json(path, tmp_path)
        assert str(path) in str(err.value)
    path.write_text(json.dumps([_record(image=None)]))
    (sample,) = read_llava_json(path, tmp_path)
    assert sample == Sample("r1", None, (("user", "<image>\nQ?"), ("assistant", "A")))


# ------------------------------------------------------------------------------------- tokens and labels


def test_encode_masks_everything_but_the_answer(train: list[Sample], tokenizer) -> None:
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    for sample in train[:20]:
        ids, labels = encode_for_training(tokenizer, sample, N_VISUAL, max_length=200)
        assert len(ids) == len(labels) and ids.count(image_id) == N_VISUAL
        supervised = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
        assert supervised == list(range(supervised[0], supervised[-1] + 1))  # one contiguous span
        assert tokenizer.decode([ids[i] for i in supervised]) == reference_answer(sample) + "<|im_end|>"
        assert all(labels[i] == ids[i] for i in supervised)
        assert encode_prompt(tokenizer, sample, N_VISUAL) == ids[: supervised[0]]  # inference sees the train prefix


def test_multi_turn_and_missing_placeholder(train: list[Sample], tokenizer) -> None:
    first = train[0]
    bare = Sample("bare", first.image, (("user", "How many shapes are there?"), ("assistant", "2"),
                                         ("user", "And now?"), ("assistant", "3")))
    ids, labels = encode_for_training(tokenizer, bare, N_VISUAL, max_length=200)
    assert ids.count(tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)) == N_VISUAL  # placeholder was prepended
    answers = tokenizer.decode([t for t, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX])
    assert answers == "2<|im_end|>3<|im_end|>"
    prompt = encode_prompt(tokenizer, bare, N_VISUAL)
    assert tokenizer.decode(prompt).endswith("And now?<|im_end|>\n<|im_start|>assistant\n")
    assert prompt == ids[:len(prompt)]
    with pytest.raises(ValueError, match="'two' has 2 '<image>' placeholders"):
        encode_for_training(tokenizer, Sample("two", first.image, (("user", "<image><image>"), ("assistant", "1"))),
                            N_VISUAL, 200)


def test_too_long_sample_raises_naming_it(train: list[Sample], tokenizer) -> None:
    ids, _ = encode_for_training(tokenizer, train[0], N_VISUAL, max_length=200)
    with pytest.raises(ValueError, match=f"sample '{train[0].id}' is {len(ids)} tokens .* over max_length 20"):
        encode_for_training(tokenizer, train[0], N_VISUAL, max_length=20)
    with pytest.raises(ValueError, match=f"sample '{train[0].id}'"):
        TrainDataset(train[:3], tokenizer, 64, N_VISUAL, max_length=20)


# ------------------------------------------------------------------------------------------------ batches


def test_collation_pads_right_for_training_and_left_for_prompts(train: list[Sample], tokenizer) -> None:
    samples = [train[0], Sample("long", train[1].image, (("user", "<image>\nPlease count every shape: how many?"),
                                                          ("assistant", "4")))]
    ds = TrainDataset(samples, tokenizer, 32, N_VISUAL, max_length=200)
    item = ds[0]
    assert item["images"].dtype == torch.uint8 and item["images"].shape == (3, 32, 32)
    pad = tokenizer.pad_token_id
    batch = collate_train([ds[0], ds[1]], pad)
    n0, n1 = (len(ds.encoded[i][0]) for i in range(2))
    assert n0 < n1 and batch["input_ids"].shape == (2, n1)
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (n1 - n0)
    assert (batch["input_ids"][0, n0:] == pad).all() and (batch["labels"][0, n0:] == IGNORE_INDEX).all()
    assert batch["input_ids"][0, :n0].tolist() == ds.encoded[0][0]

    items = build_eval_items(samples, tokenizer, 32, N_VISUAL)
    assert [i.answer for i in items] == [reference_answer(s) for s in samples]
    prompts = collate_prompts(items, pad)
    p0, p1 = (len(i.prompt_ids) for i in items)
    assert prompts["attention_mask"][0].tolist() == [0] * (p1 - p0) + [1] * p0
    assert prompts["input_ids"][0, p1 - p0:].tolist() == list(items[0].prompt_ids)
    assert prompts["images"].shape == (2, 3, 32, 32)
