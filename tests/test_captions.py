"""Caption pairs for a ``data: caption`` stage: the synthetic generator's captions.json (one LLaVA pre-training
record per train image), read by the LLaVA reader and supervised by the ``plain`` template; ``data.caption``."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from eaglesearch.data import (
    IGNORE_INDEX,
    TrainDataset,
    read_llava_json,
    read_training_samples,
    reference_answer,
    training_corpus,
    write_synthetic,
)
from eaglesearch.data.synthetic import GENERATOR_VERSION, MANIFEST, Scene, Shape, describe
from eaglesearch.model import IMAGE_TOKEN, load_tokenizer
from eaglesearch.spec import SyntheticDataSpec, TokenizerSpec
from eaglesearch.spec.data import DataSpec

ALL_TASKS = ("count", "color", "exist", "detail", "grating", "grating_coarse", "color_solo")
SPEC = SyntheticDataSpec(tasks=ALL_TASKS, train_per_task=4, eval_per_task=2, image_size=64, seed=3)
N_VISUAL = 16


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory):
    return write_synthetic(SPEC, tmp_path_factory.mktemp("captions") / "ds")


@pytest.fixture(scope="module")
def captions(dataset):
    return read_llava_json(dataset.caption_json, dataset.image_folder)


def test_one_caption_per_train_image(dataset, captions) -> None:
    assert dataset.caption_json == dataset.root / "captions.json" and dataset.caption_json.is_file()
    train = read_llava_json(dataset.train_json, dataset.image_folder)
    images = sorted(p.relative_to(dataset.image_folder) for p in (dataset.image_folder / "train").glob("*.png"))
    assert len(captions) == len(train) == len(images) == len(ALL_TASKS) * SPEC.train_per_task
    assert sorted(c.image for c in captions) == sorted(s.image for s in train) == [dataset.image_folder / p
                                                                                    for p in images]
    assert all(c.image.is_file() for c in captions)
    assert not any("eval" in c.image.parts for c in captions)  # no eval image is captioned
    for c in captions:  # the LLaVA pre-training shape: the human turn is only the placeholder
        assert c.turns[0] == ("user", IMAGE_TOKEN) and c.turns[1][0] == "assistant" and len(c.turns) == 2
        assert c.turns[1][1].endswith(".") and len(c.turns[1][1]) > 20
    manifest = json.loads((dataset.root / MANIFEST).read_text())
    assert manifest["captions"] == len(captions) and manifest["generator"] == GENERATOR_VERSION >= 2
    records = json.loads(dataset.caption_json.read_text())
    assert [r["id"] for r in records] != sorted(r["id"] for r in records)  # shuffled, like train.json
    assert len({r["id"] for r in records}) == len(records)


def test_captions_are_deterministic(dataset, tmp_path: Path) -> None:
    again = write_synthetic(SPEC, tmp_path / "again")
    assert again.caption_json.read_bytes() == dataset.caption_json.read_bytes()
    other = write_synthetic(SPEC.model_copy(update={"seed": 4}), tmp_path / "other")
    assert other.caption_json.read_bytes() != dataset.caption_json.read_bytes()


def test_captions_describe_what_the_question_asks(dataset, captions) -> None:
    """Each caption agrees with its image's question and answer, in the same words."""
    caption_of = {c.image: c.turns[1][1] for c in captions}
    for sample in read_llava_json(dataset.train_json, dataset.image_folder):
        task, caption, answer = sample.id.split("-")[0], caption_of[sample.image], reference_answer(sample)
        question = sample.turns[0][1]
        if task == "count":
            assert caption.startswith(f"{answer} shape")
        elif task == "color":
            kind = re.search(r"the (\w+)\?", question).group(1)
            assert f"{answer} {kind}" in caption
        elif task == "exist":
            color, kind = re.search(r"a (\w+) (\w+)\?", question).groups()
            assert (f"{color} {kind}" in caption) == (answer == "yes")
        elif task == "detail":
            assert f"small dark {answer} mark" in caption
        elif task.startswith("grating"):
            fineness = "fine" if task == "grating" else "coarse"
            assert f"{fineness} {answer} stripes" in caption
        else:
            assert caption.startswith(f"1 shape on a light background: a large {answer} ")


def test_describe_lists_shapes_in_reading_order() -> None:
    scene = Scene((230, 230, 230), (Shape("square", "orange", 40, 40, 12), Shape("circle", "red", 2, 2, 12),
                                    Shape("triangle", "blue", 45, 2, 12)), glyph=("plus", 25, 28))
    assert describe(scene, 64) == ("3 shapes on a light background: a red circle at the top left, a blue triangle "
                                   "at the top right and an orange square at the bottom right; a small dark plus "
                                   "mark in the center.")


def test_captions_read_and_train_with_the_plain_template(dataset, captions) -> None:
    samples, report = read_training_samples(dataset.caption_json, dataset.image_folder)
    assert samples == captions and report.total == len(captions) and not report.skipped
    corpus = training_corpus(read_llava_json(dataset.train_json, dataset.image_folder)) + training_corpus(captions)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), lambda: corpus)
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    data = TrainDataset(captions, tokenizer, SPEC.image_size, N_VISUAL, max_length=256, template="plain")
    assert len(data) == len(captions) and not data.report.skipped
    for sample, (ids, labels) in zip(data.samples, data.encoded, strict=True):
        # plain: the placeholder expands to the visual tokens (context), then the caption and "\n" (targets)
        assert ids[:N_VISUAL] == [image_id] * N_VISUAL and labels[:N_VISUAL] == [IGNORE_INDEX] * N_VISUAL
        assert image_id not in ids[N_VISUAL:] and labels[N_VISUAL:] == ids[N_VISUAL:]
        assert tokenizer.decode(ids[N_VISUAL:]) == sample.turns[1][1] + "\n"
    item = data[0]
    assert item["images"].shape == (3, SPEC.image_size, SPEC.image_size)
    assert (item["labels"] != IGNORE_INDEX).sum() > 0


def test_caption_split_spec() -> None:
    split = {"json_path": "blip_laion_cc_sbu_558k.json", "image_folder": "images"}
    assert DataSpec().caption is None
    with pytest.raises(ValidationError, match="data.caption is for source 'llava'.*captions.json"):
        DataSpec(caption=split)
    with pytest.raises(ValidationError, match="data.caption is for source 'llava'"):
        DataSpec(source="synthetic", synthetic={}, caption=split)
    llava = DataSpec(source="llava", train=split, caption=split, eval={"b": {"path": "b.json"}})
    assert llava.caption is not None and llava.caption.json_path == "blip_laion_cc_sbu_558k.json"
    assert DataSpec(source="llava", train=split, eval={"b": {"path": "b.json"}}).caption is None  # not required
