"""In-trial checkpoints: a stage killed mid-way and rerun ends bit-identical to one that never stopped."""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from eaglesearch.data import (
    TrainDataset,
    collate_train,
    read_llava_json,
    training_corpus,
    write_synthetic,
)
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.spec import (
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrainSpec,
)
from eaglesearch.spec.train import StageSpec
from eaglesearch.train.checkpoint import (
    CHECKPOINT_NAME,
    MANIFEST,
    STATE_FILE,
    CheckpointCorrupt,
    CheckpointError,
    load_checkpoint,
    trained_state,
)
from eaglesearch.train.loop import BatchStream, TrainStats, batches, train

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64),), grid=4, lm=TINY_LM)
# 40 samples in batches of 8: 5 per epoch, so checkpoints at steps 4 and 8 sit mid-epoch ((0, 4) and (1, 3)).
TRAIN = TrainSpec(steps=12, batch_size=8, lr=1e-3, warmup_ratio=0.25, log_every=1, checkpoint_every=4).stages[0]
SEED = 0


class Killed(RuntimeError):
    """Stands in for the process dying."""


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory):
    spec = SyntheticDataSpec(tasks=("count", "color"), train_per_task=20, eval_per_task=2, image_size=64)
    data = write_synthetic(spec, tmp_path_factory.mktemp("synthetic") / "ds")
    return read_llava_json(data.train_json, data.image_folder)


@pytest.fixture(scope="module")
def tokenizer(samples):
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples))


@pytest.fixture(scope="module")
def dataset(samples, tokenizer):
    torch.manual_seed(SEED)
    visual = build_eagle(SPEC, tokenizer).num_visual_tokens
    return TrainDataset(samples, tokenizer, image_size=64, num_visual_tokens=visual, max_length=96)


def fresh(tokenizer, dataset, spec: ModelSpec = SPEC):
    """What a (re)started trial process builds: the model from the seed, a new stream at the start."""
    torch.manual_seed(SEED)
    model = build_eagle(spec, tokenizer)
    stream = batches(dataset, TRAIN.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), SEED)
    return model, stream


def run(tokenizer, dataset, checkpoint_dir: Path | None = None, kill_at: int | None = None, spec: StageSpec = TRAIN,
        model_spec: ModelSpec = SPEC) -> tuple[TrainStats, dict[str, torch.Tensor], list[tuple[int, float]]]:
    model, stream = fresh(tokenizer, dataset, model_spec)
    logged: list[tuple[int, float]] = []

    def on_log(step: int, loss: float) -> None:
        if step == kill_at:
            raise Killed(f"killed at step {step}")
        logged.append((step, loss))

    stats = train(model, stream, spec, on_log=on_log, checkpoint_dir=checkpoint_dir)
    return stats, {k: v.detach().clone() for k, v in model.state_dict().items()}, logged


def rng_snapshot() -> tuple:
    return torch.get_rng_state(), random.getstate(), np.random.get_state()[1].copy()


# ------------------------------------------------------------------------------------------------ the stream


def test_stream_keeps_the_loader_order_and_resumes_at_any_position() -> None:
    items = list(range(21))
    collate = torch.tensor

    def legacy(seed: int, epochs: int, batch_size: int) -> list[torch.Tensor]:  # the stream before BatchStream
        out = []
        for epoch in range(epochs):
            gen = torch.Generator().manual_seed(seed + epoch)
            out += list(DataLoader(items, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=collate,
                                   drop_last=len(items) >= batch_size))
        return out

    for batch_size, per_epoch in ((4, 5), (30, 1)):
        stream = BatchStream(items, batch_size, collate, seed=7)
        reference = legacy(7, 3, batch_size)
        positions = []
        for expected in reference:
            positions.append(stream.position)
            assert torch.equal(next(stream), expected)
        assert positions == [(e, o) for e in range(3) for o in range(per_epoch)]
        assert stream.position == (3, 0)
        for k, position in enumerate(positions):
            resumed = batches(items, batch_size, collate, seed=7, start=position)
            assert [next(resumed).tolist() for _ in range(len(reference) - k)] == [b.tolist() for b in reference[k:]]
    stream = BatchStream(items, 4, collate, seed=7)
    stream.seek((1, 5))  # the end of epoch 1 is the start of epoch 2
    assert stream.position == (2, 0) and torch.equal(next(stream), legacy(7, 3, 4)[10])
    with pytest.raises(ValueError, match="outside the stream"):
        stream.seek((0, 6))
    with pytest.raises(ValueError, match="empty"):
        BatchStream([], 4, collate, seed=0)


# ------------------------------------------------------------------------------------------------ resume


def test_killed_stage_resumes_bit_identical(tmp_path: Path, tokenizer, dataset) -> None:
    plain, plain_weights, plain_log = run(tokenizer, dataset)
    after_plain = rng_snapshot()
    assert plain.resumed_from == 0 and len(plain.losses) == TRAIN.steps

    ckpt = tmp_path / "trial"
    with pytest.raises(Killed):
        run(tokenizer, dataset, ckpt, kill_at=5)  # steps 0..5 done, last checkpoint after step 4 (0-based 3)
    saved = load_checkpoint(ckpt / CHECKPOINT_NAME)
    assert saved is not None and saved.step == 4 and saved.data_state == (0, 4)
    assert saved.losses == plain.losses[:4]
    assert [p.name for p in ckpt.iterdir()] == [CHECKPOINT_NAME]  # no temp files left behind

    # The rerun starts from another RNG state: the checkpoint must put it back.
    torch.rand(3), random.random(), np.random.rand()
    resumed, weights, logged = run(tokenizer, dataset, ckpt)
    assert resumed.resumed_from == 4
    assert resumed.losses == plain.losses  # exact float equality, every step
    assert logged == plain_log  # restored steps are replayed to on_log
    assert resumed.samples == plain.samples
    assert weights.keys() == plain_weights.keys()
    assert all(torch.equal(weights[k], plain_weights[k]) for k in weights), \
        [k for k in weights if not torch.equal(weights[k], plain_weights[k])]
    after = rng_snapshot()
    assert torch.equal(after[0], after_plain[0]) and after[1] == after_plain[1]
    assert np.array_equal(after[2], after_plain[2])

    # The end of the stage is checkpointed too: a rerun after it trains nothing and returns the same stage.
    final = load_checkpoint(ckpt / CHECKPOINT_NAME)
    assert final is not None and final.step == TRAIN.steps and final.data_state == (2, 2)
    again, again_weights, again_log = run(tokenizer, dataset, ckpt)
    assert again.resumed_from == TRAIN.steps and again.losses == plain.losses and again_log == plain_log
    assert all(torch.equal(again_weights[k], plain_weights[k]) for k in plain_weights)


def test_end_only_checkpoint_and_changed_settings(tmp_path: Path, tokenizer, dataset) -> None:
    short = TRAIN.model_copy(update={"steps": 2, "checkpoint_every": 0})
    stats, _, _ = run(tokenizer, dataset, tmp_path, spec=short)
    saved = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    assert stats.resumed_from == 0 and saved is not None and saved.step == 2
    # Logging and checkpoint cadence may change between runs; what the stage computes may not.
    assert run(tokenizer, dataset, tmp_path, spec=short.model_copy(update={"log_every": 5,
                                                                           "checkpoint_every": 1}))[0].resumed_from == 2
    with pytest.raises(CheckpointError, match=r"other training settings \(lr\).*delete it to start over"):
        run(tokenizer, dataset, tmp_path, spec=short.model_copy(update={"lr": 2e-3}))
    other = SPEC.model_copy(update={"lm": TINY_LM.model_copy(update={"intermediate_size": 48})})
    with pytest.raises(CheckpointError, match="written for another model") as err:
        run(tokenizer, dataset, tmp_path, spec=short, model_spec=other)
    assert str(tmp_path / CHECKPOINT_NAME) in str(err.value) and "delete it to start over" in str(err.value)


def test_time_interval_checkpoints_at_log_steps_and_async_saves_resume_bit_identical(
        tmp_path: Path, tokenizer, dataset, monkeypatch: pytest.MonkeyPatch) -> None:
    """By default a checkpoint is due every ``checkpoint_every_s`` seconds, checked at log steps; written in the
    background (as on CUDA) it still holds the state of its step, and a resume from it is bit-identical."""
    timed = TRAIN.model_copy(update={"checkpoint_every": None, "log_every": 3})
    plain, plain_weights, _ = run(tokenizer, dataset, spec=timed)
    with pytest.raises(Killed):  # the default interval (600 s) does not come round in a few steps: no checkpoint
        run(tokenizer, dataset, tmp_path / "default", kill_at=9, spec=timed)
    assert load_checkpoint(tmp_path / "default" / CHECKPOINT_NAME) is None

    monkeypatch.setattr("eaglesearch.train.strategy.async_by_default", lambda device: True)
    every_log = timed.model_copy(update={"checkpoint_every_s": 1e-6})
    with pytest.raises(Killed):  # log steps 0, 3, 6, 9 each checkpoint (after steps 1, 4, 7, 10) before on_log
        run(tokenizer, dataset, tmp_path / "timed", kill_at=9, spec=every_log)
    saved = load_checkpoint(tmp_path / "timed" / CHECKPOINT_NAME)
    previous = load_checkpoint(tmp_path / "timed" / "prev")
    assert saved is not None and previous is not None and (saved.step, previous.step) == (10, 7)
    resumed, weights, _ = run(tokenizer, dataset, tmp_path / "timed", spec=every_log)
    assert resumed.resumed_from == 10 and resumed.losses == plain.losses
    assert all(torch.equal(weights[k], plain_weights[k]) for k in plain_weights)


def test_a_caller_that_saves_the_result_skips_the_final_checkpoint_but_never_a_rung_stop(
        tmp_path: Path, tokenizer, dataset) -> None:
    short = TRAIN.model_copy(update={"steps": 3, "checkpoint_every": 0})
    model, stream = fresh(tokenizer, dataset)
    train(model, stream, short, checkpoint_dir=tmp_path / "full", final_checkpoint=False)
    assert not (tmp_path / "full").exists() or not any((tmp_path / "full").iterdir())
    model, stream = fresh(tokenizer, dataset)
    train(model, stream, short, checkpoint_dir=tmp_path / "rung", stop_at=2, final_checkpoint=False)
    saved = load_checkpoint(tmp_path / "rung" / CHECKPOINT_NAME)
    assert saved is not None and saved.step == 2


def test_stage_in_epochs_must_be_resolved(tokenizer, dataset) -> None:
    by_epochs = TRAIN.model_copy(update={"steps": None, "epochs": 0.4})
    model, stream = fresh(tokenizer, dataset)
    with pytest.raises(ValueError, match=r"with_steps\(stage.total_steps"):
        train(model, stream, by_epochs)
    assert by_epochs.with_steps(by_epochs.total_steps(len(dataset))).steps == 2


def test_corrupt_checkpoint_names_the_file(tmp_path: Path, tokenizer, dataset) -> None:
    """A damaged folder is reported as such (training skips it, see tests/test_faults.py); another format is not."""
    path = tmp_path / CHECKPOINT_NAME
    assert load_checkpoint(path) is None
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointCorrupt, match="not an eaglesearch training checkpoint") as err:
        load_checkpoint(path)
    assert str(path) in str(err.value)
    path.unlink()
    run(tokenizer, dataset, tmp_path, spec=TRAIN.model_copy(update={"steps": 1}))
    manifest = json.loads((path / MANIFEST).read_text())
    assert set(manifest["files"]) >= {".metadata", STATE_FILE}  # every file, the DCP metadata included
    (path / MANIFEST).unlink()  # what a kill before the write finished leaves (it is never renamed into place)
    with pytest.raises(CheckpointCorrupt, match="unfinished"):
        load_checkpoint(path)
    (path / MANIFEST).write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(CheckpointError, match="format version 1.*delete it to start over") as other:
        load_checkpoint(path)
    assert not isinstance(other.value, CheckpointCorrupt)


def test_frozen_weights_are_rebuilt_not_stored(tokenizer) -> None:
    frozen = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64, freeze=True),), grid=4,
                       lm=TINY_LM)
    torch.manual_seed(SEED)
    model = build_eagle(frozen, tokenizer)
    stored = trained_state(model)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and trainable <= stored.keys()
    assert not any(n in stored for n, p in model.named_parameters() if not p.requires_grad)
    assert {n for n, _ in model.named_buffers()} & set(model.state_dict()) <= stored.keys()
