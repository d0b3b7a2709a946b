"""Problem samples under data.on_problem: ``error`` names file, record and fix; ``skip`` drops and counts them."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import io
import json
import pickle
import re
from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from eaglesearch.data import (
    IGNORE_INDEX,
    DataProblem,
    DataReport,
    Sample,
    TrainDataset,
    collate_train,
    load_training_samples,
    prepare_training_samples,
    read_llava_json,
    read_training_samples,
    training_corpus,
)
from eaglesearch.model import IMAGE_TOKEN, load_tokenizer
from eaglesearch.spec import DataSpec, TokenizerSpec
from eaglesearch.spec.data import PROBLEM_KINDS, OnProblemSpec

torch.set_num_threads(1)

N_VISUAL = 4
MAX_LENGTH = 100
LONG_ANSWER = " ".join(["circle"] * 150)


def _png(color: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), color).save(buffer, "PNG")
    return buffer.getvalue()


def _turns(*texts: str) -> list[dict[str, str]]:
    return [{"from": "human" if i % 2 == 0 else "gpt", "value": t} for i, t in enumerate(texts)]


# one record per outcome: (id, record without id, the problem kind or None if it is kept)
RECORDS: list[tuple[str, dict[str, object], str | None]] = [
    ("ok", {"image": "red.png", "conversations": _turns("<image>\nWhat colour?", "red")}, None),
    ("multi", {"image": "blue.png", "conversations": _turns("What colour?", "blue", "Is it round?", "yes",
                                                            "How many?", "one")}, None),
    ("text", {"conversations": _turns("Name a colour.", "green")}, "text_only"),
    ("gone", {"image": "missing.png", "conversations": _turns("<image>\nColour?", "red")}, "missing_image"),
    ("broken", {"image": "truncated.png", "conversations": _turns("<image>\nColour?", "red")}, "unreadable_image"),
    ("unanswered", {"image": "red.png", "conversations": _turns("<image>\nColour?")}, "no_answer"),
    ("dangling", {"image": "red.png", "conversations": _turns("<image>\nColour?", "red", "Sure?")}, "no_answer"),
    ("long", {"image": "red.png", "conversations": _turns("<image>\nDescribe it.", LONG_ANSWER)}, "too_long"),
    ("empty", {"image": "red.png", "conversations": _turns("<image>\nColour?", " ")}, "no_target"),
    ("robot", {"image": "red.png", "conversations": [{"from": "robot", "value": "beep"}]}, "malformed"),
    ("twice", {"image": "red.png", "conversations": _turns("<image><image>\nColour?", "red")}, "malformed"),
]
KEPT = [rid for rid, _, kind in RECORDS if kind is None]
# the fix each error message names, besides the on_problem setting that would skip the sample
FIXES = {"text_only": "text-only samples are not supported", "missing_image": "image_folder",
         "unreadable_image": "re-create or re-download it", "no_answer": "add the answer",
         "too_long": "raise data.max_length", "no_target": "fill in the answers", "malformed": "use one of",
         "template": "use chatml, vicuna_v1 or llama3"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policy")
    (root / "red.png").write_bytes(_png((220, 30, 30)))
    (root / "blue.png").write_bytes(_png((30, 30, 220)))
    whole = _png((30, 220, 30))
    (root / "truncated.png").write_bytes(whole[: len(whole) // 2])
    return root


@pytest.fixture(scope="module")
def tokenizer(folder: Path):
    path = folder / "corpus.json"
    path.write_text(json.dumps([{"id": rid, **rec} for rid, rec, kind in RECORDS if kind in (None, "too_long")]))
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(read_llava_json(path, folder)))


def _write(folder: Path, name: str, ids: list[str]) -> Path:
    records = {rid: rec for rid, rec, _ in RECORDS}
    path = folder / name
    path.write_text(json.dumps([{"id": rid, **records[rid]} for rid in ids]))
    return path


def _load(path: Path, folder: Path, tokenizer, **kw):
    kw.setdefault("num_visual_tokens", N_VISUAL)
    kw.setdefault("max_length", MAX_LENGTH)
    return load_training_samples(path, folder, tokenizer, **kw)


def test_skip_drops_and_counts_every_problem_kind(folder: Path, tokenizer) -> None:
    path = _write(folder, "all.json", [rid for rid, _, _ in RECORDS])
    kept, report = _load(path, folder, tokenizer, on_problem="skip")
    assert [e.sample.id for e in kept] == KEPT
    expected: dict[str, list[str]] = {}
    for rid, _, kind in RECORDS:
        if kind is not None:
            expected.setdefault(kind, []).append(rid)
    assert report.skipped == {kind: len(ids) for kind, ids in expected.items()}
    assert report.examples == expected
    assert (report.total, report.kept, report.n_skipped) == (len(RECORDS), len(KEPT), len(RECORDS) - len(KEPT))
    summary = report.summary()
    assert summary.startswith(f"{path}: kept {len(KEPT)} of {len(RECORDS)} samples; skipped {report.n_skipped}: ")
    assert "no_answer 2 (ids 'unanswered', 'dangling')" in summary and "too_long 1 (ids 'long')" in summary
    metrics = report.as_metrics()
    assert metrics["data/kept"] == len(KEPT) and metrics["data/skipped/malformed"] == 2
    for e in kept:  # what is kept is fully supervised: every answer, nothing else
        answers = [text for role, text in e.sample.turns if role == "assistant"]
        runs = tokenizer.decode([t for t, label in zip(e.input_ids, e.labels, strict=True) if label != IGNORE_INDEX])
        assert runs == "".join(f"{a}<|im_end|>" for a in answers)


@pytest.mark.parametrize("kind", sorted({kind for _, _, kind in RECORDS if kind is not None}))
def test_error_names_the_file_the_record_the_problem_and_the_fix(kind: str, folder: Path, tokenizer) -> None:
    bad = next(rid for rid, _, k in RECORDS if k == kind)
    path = _write(folder, f"error-{kind}.json", ["ok", bad])
    with pytest.raises(DataProblem) as err:
        _load(path, folder, tokenizer)  # on_problem defaults to error
    message = str(err.value)
    assert err.value.kind == kind and err.value.sample_id == bad
    assert str(path) in message and "record 1" in message and repr(bad) in message
    assert FIXES[kind] in message
    assert f"data.on_problem: {{{kind}: skip}}" in message and "data.on_problem: skip for every kind" in message
    again = pickle.loads(pickle.dumps(err.value))  # it survives a trip to another process
    assert (again.kind, again.sample_id, str(again)) == (kind, bad, message)
    kept, report = _load(path, folder, tokenizer, on_problem={kind: "skip"})  # exactly that kind is skipped
    assert [e.sample.id for e in kept] == ["ok"] and report.skipped == {kind: 1} and report.examples == {kind: [bad]}


def test_template_misfit_is_a_problem_kind(folder: Path, tokenizer) -> None:
    path = _write(folder, "plain.json", ["ok", "multi"])
    with pytest.raises(DataProblem, match=re.escape(f"{path} record 1: sample 'multi'")) as err:
        _load(path, folder, tokenizer, template="plain")
    assert err.value.kind == "template" and FIXES["template"] in str(err.value)
    kept, report = _load(path, folder, tokenizer, template="plain", on_problem="skip")
    assert [e.sample.id for e in kept] == ["ok"] and report.skipped == {"template": 1}
    assert tokenizer.decode([t for t, label in zip(kept[0].input_ids, kept[0].labels, strict=True)
                             if label != IGNORE_INDEX]) == "red\n"


def test_per_kind_policy_with_a_default(folder: Path, tokenizer) -> None:
    path = _write(folder, "mixed.json", ["ok", "long", "gone"])
    policy = {"default": "skip", "missing_image": "error"}
    with pytest.raises(DataProblem, match="missing.png does not exist") as err:
        _load(path, folder, tokenizer, on_problem=policy)
    assert err.value.kind == "missing_image"
    kept, report = _load(path, folder, tokenizer, on_problem=OnProblemSpec(default="error", too_long="skip",
                                                                            missing_image="skip"))
    assert [e.sample.id for e in kept] == ["ok"] and report.skipped == {"too_long": 1, "missing_image": 1}


def test_skipping_everything_is_an_error(folder: Path, tokenizer) -> None:
    path = _write(folder, "hopeless.json", ["gone", "long"])
    with pytest.raises(ValueError, match=r"every training sample was skipped .*missing_image 1 .*too_long 1"):
        _load(path, folder, tokenizer, on_problem="skip")


def test_stages_share_one_report(folder: Path, tokenizer) -> None:
    path = _write(folder, "stages.json", ["ok", "robot", "long", "multi"])
    samples, report = read_training_samples(path, folder, on_problem="skip")
    assert [s.id for s in samples] == ["ok", "long", "multi"] and report.skipped == {"malformed": 1}
    kept, same = prepare_training_samples(samples, tokenizer, num_visual_tokens=N_VISUAL, max_length=MAX_LENGTH,
                                          on_problem="skip", report=report)
    assert same is report and [e.sample.id for e in kept] == ["ok", "multi"]
    assert (report.total, report.kept, report.skipped) == (4, 2, {"malformed": 1, "too_long": 1})
    alone = DataReport(source="x")
    assert alone.summary() == "x: kept 0 of 0 samples" and alone.as_metrics()["data/skipped"] == 0


def test_train_dataset_applies_the_policy(folder: Path, tokenizer) -> None:
    samples, _ = read_training_samples(_write(folder, "ds.json", ["ok", "text", "broken", "multi"]), folder,
                                       on_problem="skip")
    with pytest.raises(DataProblem, match=r"record 1: sample 'text' has no image; text-only samples") as err:
        TrainDataset(samples, tokenizer, 32, N_VISUAL, MAX_LENGTH)
    assert "data.on_problem: {text_only: skip}" in str(err.value)
    ds = TrainDataset(samples, tokenizer, 32, N_VISUAL, MAX_LENGTH, check_images="decode",
                      on_problem={"text_only": "skip", "unreadable_image": "skip"})
    assert [s.id for s in ds.samples] == ["ok", "multi"] and len(ds) == 2  # a full check up front, when asked
    assert ds.report.skipped == {"text_only": 1, "unreadable_image": 1}
    assert ds[0]["images"].shape == (3, 32, 32) and ds[0]["images"].float().mean() > 0
    ds = TrainDataset(samples, tokenizer, 32, N_VISUAL, MAX_LENGTH, on_problem="skip", allow_text_only=True)
    # By default no image is opened up front: the truncated file is found where it is decoded (tests/test_loader.py)
    assert [s.id for s in ds.samples] == ["ok", "text", "broken", "multi"] and not ds.report.skipped
    text = ds[1]  # text-only: a blank image and no image tokens (what a text-capable model would need)
    assert not text["images"].any() and IMAGE_TOKEN not in tokenizer.convert_ids_to_tokens(text["input_ids"])
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    batch = collate_train([ds[i] for i in range(3)], tokenizer.pad_token_id)
    assert (batch["input_ids"] == image_id).sum(dim=1).tolist() == [N_VISUAL, 0, N_VISUAL]


def test_reader_accepts_multi_turn_and_text_only(folder: Path) -> None:
    samples = read_llava_json(_write(folder, "read.json", ["ok", "multi", "text"]), folder)
    assert [len(s.turns) for s in samples] == [2, 6, 2]
    assert samples[1].turns[-1] == ("assistant", "one") and samples[2].image is None
    assert samples[0] == Sample("ok", folder / "red.png", (("user", "<image>\nWhat colour?"), ("assistant", "red")))
    with pytest.raises(DataProblem, match="record 1 \\(id 'robot'\\), turn 0: unknown role") as err:
        read_llava_json(_write(folder, "strict.json", ["ok", "robot"]), folder)  # strict: the first problem raises
    assert err.value.kind == "malformed"


def test_on_problem_spec_forms() -> None:
    assert set(OnProblemSpec.model_fields) == {"default", *PROBLEM_KINDS}  # one setting per problem kind
    assert DataSpec().on_problem == OnProblemSpec() and DataSpec().on_problem.action("too_long") == "error"
    skip = DataSpec(on_problem="skip").on_problem
    assert skip == OnProblemSpec(default="skip") and all(skip.action(k) == "skip" for k in PROBLEM_KINDS)
    mixed = DataSpec(on_problem={"too_long": "skip", "missing_image": "error"}).on_problem
    assert mixed == OnProblemSpec(too_long="skip")  # a value equal to the default is dropped: one canonical form
    assert mixed.action("too_long") == "skip" and mixed.action("malformed") == "error"
    assert hash(mixed) == hash(OnProblemSpec(too_long="skip"))
    with pytest.raises(ValidationError, match="typo"):
        DataSpec(on_problem={"typo": "skip"})
    with pytest.raises(ValidationError):
        DataSpec(on_problem="ignore")
