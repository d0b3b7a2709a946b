"""What a stage trains (eaglesearch.train.trainable): requires_grad per part, set from scratch for every stage."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from eaglesearch.data import TrainDataset, collate_train, read_llava_json, training_corpus, write_synthetic
from eaglesearch.model import EagleModel, build_eagle, load_tokenizer
from eaglesearch.spec import (
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrainSpec,
)
from eaglesearch.spec.train import TrainableSpec
from eaglesearch.train import apply_trainable, batches, train
from eaglesearch.train.trainable import decoder_layers

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", resolution=64),
                          ExpertSpec(name="convnext", resolution=64, freeze=True, trainable_blocks=1)),
                 grid=4, lm=TINY_LM.model_copy(update={"freeze": True}), freeze_projector=True)
OPEN = ModelSpec(experts=(ExpertSpec(name="clip", resolution=64),), grid=4, lm=TINY_LM)


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory):
    spec = SyntheticDataSpec(tasks=("count",), train_per_task=8, eval_per_task=2, image_size=64)
    data = write_synthetic(spec, tmp_path_factory.mktemp("synthetic") / "ds")
    return read_llava_json(data.train_json, data.image_folder)


@pytest.fixture(scope="module")
def tokenizer(samples):
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples))


def build(tokenizer, spec: ModelSpec = SPEC) -> EagleModel:
    torch.manual_seed(0)
    return build_eagle(spec, tokenizer)


def grad_map(model: EagleModel) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in model.named_parameters()}


def trainable_names(module: torch.nn.Module) -> set[str]:
    return {name for name, p in module.named_parameters() if p.requires_grad}


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_spec_setting_is_what_the_build_applied(tokenizer) -> None:
    model = build(tokenizer)
    built = grad_map(model)
    counts = apply_trainable(model, TrainableSpec(), SPEC)
    assert grad_map(model) == built
    convnext = model.experts["convnext"]
    assert convnext.frozen and convnext.trainable_blocks == 1
    last_stage = sum(numel(m) for m in convnext._trainable_modules())
    assert counts == {"experts/clip": numel(model.experts["clip"]), "experts/convnext": last_stage,
                      "projector": 0, "lm": 0, "total": numel(model.experts["clip"]) + last_stage}
    # The same trainable setting on a model spec without freezes trains everything.
    everything = build(tokenizer, OPEN)
    counts = apply_trainable(everything, TrainableSpec(), OPEN)
    assert all(grad_map(everything).values())
    assert counts["total"] == numel(everything) and counts["lm"] == numel(everything.lm)  # tied weights once


def test_all_none_and_last_n(tokenizer) -> None:
    model = build(tokenizer)
    model.train()
    counts = apply_trainable(model, TrainableSpec(experts={"clip": 1, "convnext": "all"}, projector=True, lm=1),
                             SPEC)
    clip, convnext = model.experts["clip"], model.experts["convnext"]
    assert clip.frozen and clip.trainable_blocks == 1
    last_block = clip.freezable_blocks()[-1]
    assert counts["experts/clip"] == sum(numel(m) for m in clip._trainable_modules()) >= numel(last_block) > 0
    assert all(p.requires_grad for p in last_block.parameters())
    assert not any(p.requires_grad for p in clip.freezable_blocks()[0].parameters())
    assert last_block.training and not clip.training  # trainable blocks follow the model's mode, the rest is eval
    assert not convnext.frozen and convnext.training and counts["experts/convnext"] == numel(convnext)
    assert counts["projector"] == numel(model.projector) + numel(model.fusion) > 0
    # LM last 1: layer 1 and the final norm; embeddings (tied to the head) and layer 0 stay frozen.
    assert trainable_names(model.lm) == {n for n, _ in model.lm.named_parameters()
                                         if n.startswith(("model.layers.1.", "model.norm."))}
    assert counts["lm"] == numel(decoder_layers(model.lm)[1]) + numel(model.lm.model.norm)
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")

    counts = apply_trainable(model, TrainableSpec(experts="none", projector=False, lm="all"), SPEC)
    assert counts["experts/clip"] == counts["experts/convnext"] == counts["projector"] == 0
    assert clip.frozen and convnext.frozen and not clip.training
    assert counts["lm"] == counts["total"] == numel(model.lm)

    counts = apply_trainable(model, TrainableSpec(experts=2, lm="none"), SPEC)
    assert counts["lm"] == 0 and clip.trainable_blocks == convnext.trainable_blocks == 2


def test_a_stage_unfreezes_what_the_previous_froze(tokenizer) -> None:
    model = build(tokenizer)
    model.train()
    apply_trainable(model, TrainableSpec(experts="none", projector=False, lm="none"), SPEC)
    assert not any(grad_map(model).values())
    counts = apply_trainable(model, TrainableSpec(experts="all", projector=True, lm="all"), SPEC)
    assert all(grad_map(model).values()) and counts["total"] == numel(model)
    for expert in model.experts.values():
        assert not expert.frozen and expert.trainable_blocks == 0
        assert all(m.training for m in expert.modules())  # back in train mode with the model
    # VisionExpert.unfreeze on its own: everything trains again; the mode follows the next train().
    expert = model.experts["convnext"]
    expert.freeze(1)
    expert.unfreeze()
    assert all(p.requires_grad for p in expert.parameters()) and not expert.frozen
    expert.train()
    assert all(m.training for m in expert.modules())


def test_invalid_settings_name_the_fix(tokenizer) -> None:
    model = build(tokenizer)
    with pytest.raises(ValueError, match=r"trainable.lm=3 but the language model has 2 decoder layers"):
        apply_trainable(model, TrainableSpec(lm=3), SPEC)
    with pytest.raises(ValueError, match=r"trainable.experts: clip=5: .*has 2 blocks"):
        apply_trainable(model, TrainableSpec(experts={"clip": 5}), SPEC)
    # an expert this trial does not have (another trial of the search may) is no error
    assert apply_trainable(model, TrainableSpec(experts={"sam": "all"}), SPEC) == apply_trainable(
        model, TrainableSpec(), SPEC)
    with pytest.raises(ValueError, match="cannot find the decoder layers"):
        decoder_layers(torch.nn.Linear(2, 2))


def test_frozen_parts_stay_put_while_trainable_parts_move(samples, tokenizer) -> None:
    model = build(tokenizer)
    counts = apply_trainable(model, TrainableSpec(experts={"clip": "none"}, projector=True, lm=1), SPEC)
    assert counts["experts/clip"] == 0 and counts["experts/convnext"] > 0
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    dataset = TrainDataset(samples, tokenizer, image_size=64, num_visual_tokens=model.num_visual_tokens,
                           max_length=96)
    stage = TrainSpec(steps=2, batch_size=4, lr=1e-2, warmup_ratio=0.0).stages[0]
    train(model, batches(dataset, 4, lambda b: collate_train(b, tokenizer.pad_token_id), 0), stage)
    after = model.state_dict()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    moved = {k for k in trainable if not torch.equal(before[k], after[k])}
    assert moved == trainable, sorted(trainable - moved)
    still = {n for n, _ in model.named_parameters()} - trainable
    assert still and all(torch.equal(before[k], after[k]) for k in still), \
        [k for k in still if not torch.equal(before[k], after[k])]
    assert any(k.startswith("lm.model.layers.1.") for k in moved) and any(k.startswith("projector.") for k in moved)
    assert "lm.model.embed_tokens.weight" in still and any(k.startswith("experts.clip.") for k in still)
