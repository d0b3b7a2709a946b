"""Gradient accumulation, the stage's optimizer and its LR schedule (eaglesearch.train).

Micro-batches of a global batch must give the full-batch step: same shown loss, same update (up to float
rounding), even when the micro-batches hold different numbers of answer tokens.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import itertools
import math

import pytest
import torch

from eaglesearch.data import TrainDataset, collate_train, read_llava_json, training_corpus, write_synthetic
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
from eaglesearch.train import batches, build_optimizer, lr_multiplier, train, warmup_cosine
from eaglesearch.train.distributed import (
    WorldInfo,
    accumulate_gradients,
    answer_tokens,
    micro_batches,
)

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64),), grid=4, lm=TINY_LM)
STAGE = TrainSpec(steps=4, batch_size=8, lr=1e-3, warmup_ratio=0.25, log_every=1).stages[0]
SEED = 0


@pytest.fixture(scope="module")
def tokenizer_and_dataset(tmp_path_factory: pytest.TempPathFactory):
    spec = SyntheticDataSpec(tasks=("count", "color"), train_per_task=12, eval_per_task=2, image_size=64)
    data = write_synthetic(spec, tmp_path_factory.mktemp("synthetic") / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples))
    torch.manual_seed(SEED)
    visual = build_eagle(SPEC, tokenizer).num_visual_tokens
    return tokenizer, TrainDataset(samples, tokenizer, image_size=64, num_visual_tokens=visual, max_length=96)


def _uneven(stream):
    """Ignore the answers of the first three rows: micro-batches of 2 then hold different answer-token counts, so
    a mean of per-micro-batch means would differ from the full-batch mean."""
    for batch in stream:
        labels = batch["labels"].clone()
        labels[:3] = -100
        yield {**batch, "labels": labels}


def _train(tokenizer, dataset, stage: StageSpec) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.manual_seed(SEED)
    model = build_eagle(SPEC, tokenizer)
    stream = batches(dataset, stage.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), SEED)
    stats = train(model, _uneven(stream), stage)
    return stats.losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_micro_batches_reproduce_the_full_batch_step(tokenizer_and_dataset) -> None:
    tokenizer, dataset = tokenizer_and_dataset
    full_losses, full = _train(tokenizer, dataset, STAGE)
    micro_losses, micro = _train(tokenizer, dataset, STAGE.model_copy(update={"micro_batch_size": 2}))
    assert len(micro_losses) == STAGE.steps
    torch.testing.assert_close(torch.tensor(micro_losses), torch.tensor(full_losses), rtol=1e-5, atol=1e-6)
    for name, ref in full.items():
        torch.testing.assert_close(micro[name], ref, rtol=1e-5, atol=1e-5, msg=name)
    torch.manual_seed(SEED)
    initial = build_eagle(SPEC, tokenizer).state_dict()
    changed = any(not torch.equal(initial[k], full[k]) for k in full)
    assert changed  # the comparison above is between trained weights, not two untouched models


def test_accumulated_gradient_and_loss_equal_the_full_batch(tokenizer_and_dataset) -> None:
    tokenizer, dataset = tokenizer_and_dataset
    torch.manual_seed(SEED)
    model = build_eagle(SPEC, tokenizer)
    batch = next(_uneven(batches(dataset, 8, lambda b: collate_train(b, tokenizer.pad_token_id), SEED)))
    counts = [answer_tokens(m["labels"]) for m in micro_batches(batch, 2)]
    assert len(set(counts)) > 1, counts  # the micro-batches are uneven

    loss = model(batch["images"], batch["input_ids"], batch["attention_mask"], labels=batch["labels"]).loss
    loss.backward()
    full = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    shown = accumulate_gradients(model, batch, None, micro_batch_size=2)
    torch.testing.assert_close(shown, loss.detach(), rtol=1e-5, atol=1e-6)
    for name, grad in full.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-4, atol=1e-6, msg=name)


def test_micro_batch_split_and_indivisible_share() -> None:
    share = {"labels": torch.arange(6), "input_ids": torch.arange(12).reshape(6, 2)}
    parts = micro_batches(share, 2)
    assert [p["labels"].tolist() for p in parts] == [[0, 1], [2, 3], [4, 5]]
    assert micro_batches(share, None) == [share] and micro_batches(share, 8) == [share]
    with pytest.raises(ValueError, match=r"share of the global batch is 6 rows.*micro-batches of 4.*1, 2, 3, 6"):
        micro_batches(share, 4)
    # 12 rows over 3 workers: 4 rows each, which micro-batches of 3 cannot split (checked before any forward pass)
    batch = {"labels": torch.zeros(12, 5, dtype=torch.long), "input_ids": torch.zeros(12, 5, dtype=torch.long)}
    with pytest.raises(ValueError, match="micro_batch_size"):
        accumulate_gradients(torch.nn.Linear(1, 1), batch, WorldInfo(1, 3), micro_batch_size=3)


# ------------------------------------------------------------------------------------- optimizer and schedule


def test_schedules() -> None:
    total, warmup = 10, 2
    assert [lr_multiplier(s, total, warmup, "constant") for s in range(total)] == [0.5] + [1.0] * 9
    linear = [lr_multiplier(s, total, warmup, "linear") for s in range(total)]
    assert linear[:3] == [0.5, 1.0, 1.0] and linear[-1] == pytest.approx(1 / 8)
    assert all(a >= b for a, b in itertools.pairwise(linear[1:]))
    cosine = [lr_multiplier(s, total, warmup, "cosine") for s in range(total)]
    assert cosine == [warmup_cosine(s, total, warmup) for s in range(total)]
    assert cosine[2] == 1.0 and cosine[6] == pytest.approx(0.5) and cosine[-1] == pytest.approx(
        0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert lr_multiplier(total, total, warmup, "linear") == 0.0 and lr_multiplier(total, total, 0) == 0.0


def test_optimizer_kinds_and_decay_groups() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    adamw = build_optimizer(model, STAGE.model_copy(update={"betas": (0.8, 0.9), "weight_decay": 0.1}))
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["betas"] == (0.8, 0.9)
    assert [len(g["params"]) for g in adamw.param_groups] == [1, 3]  # the weight matrix; bias + norm
    assert [g["weight_decay"] for g in adamw.param_groups] == [0.1, 0.0]
    sgd = build_optimizer(model, STAGE.model_copy(update={"optimizer": "sgd", "momentum": 0.5, "lr": 0.1}))
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.5 and sgd.defaults["lr"] == 0.1
    assert [g["weight_decay"] for g in sgd.param_groups] == [STAGE.weight_decay, 0.0]
    model.requires_grad_(False)
    with pytest.raises(ValueError, match=r"stage 'sft' has nothing to train.*`trainable`"):
        build_optimizer(model, STAGE)
