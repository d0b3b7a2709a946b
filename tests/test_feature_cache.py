"""The frozen-expert feature cache: the same maps as running the expert, computed once per image, never stale."""

from __future__ import annotations

import pytest
import torch

from eaglesearch.model.experts.feature_cache import FeatureCache
from eaglesearch.model.experts.registry import build_expert, resolve_expert
from eaglesearch.spec import ExpertSpec
from eaglesearch.spec.train import TrainSpec


def _expert(name: str = "clip"):
    torch.manual_seed(0)
    return build_expert(resolve_expert(ExpertSpec(name=name, preset="tiny_random")))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_cached_maps_equal_live_maps_and_repeats_are_not_recomputed() -> None:
    expert = _expert()
    expert.freeze()
    images = _images(6)
    with torch.no_grad():
        live = expert(expert.preprocess(images))
    cache = expert.attach_feature_cache(2**30)
    calls: list[int] = []
    forward = expert.forward
    expert.forward = lambda pixels: (calls.append(len(pixels)), forward(pixels))[1]  # type: ignore[method-assign]
    first = expert.feature_map(images)
    again = expert.feature_map(images[[5, 0, 5, 2]])
    assert torch.equal(first, live)
    assert torch.equal(again, live[[5, 0, 5, 2]])
    assert calls == [6]  # the second batch came from memory
    assert (cache.misses, cache.hits, len(cache)) == (6, 4, 6)


def test_duplicate_images_in_one_batch_are_computed_once() -> None:
    expert = _expert()
    expert.freeze()
    cache = expert.attach_feature_cache(2**30)
    images = _images(3)
    out = expert.feature_map(images[[0, 1, 0, 2, 1]])
    assert cache.misses == 3 and len(cache) == 3
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[4])


def test_a_trainable_expert_bypasses_the_cache() -> None:
    expert = _expert()
    cache = expert.attach_feature_cache(2**30)
    expert.train()
    out = expert.feature_map(_images(2))
    assert out.requires_grad  # gradients reach the expert
    assert len(cache) == 0 and cache.misses == 0
    expert.freeze(trainable_blocks=1)  # partly trainable: still a function of changing weights
    expert.train()
    assert expert.feature_map(_images(2)).requires_grad and len(cache) == 0


def test_a_weight_change_empties_the_cache() -> None:
    expert = _expert()
    expert.freeze()
    cache = expert.attach_feature_cache(2**30)
    images = _images(2)
    before = expert.feature_map(images)
    with torch.no_grad():
        next(expert.parameters()).add_(0.5)  # what an optimizer step or load_state_dict does
    after = expert.feature_map(images)
    with torch.no_grad():
        live = expert(expert.preprocess(images))
    assert torch.equal(after, live) and not torch.equal(after, before)
    assert cache.misses == 4


def test_the_size_limit_is_respected() -> None:
    expert = _expert()
    expert.freeze()
    one = expert.feature_map(_images(1)).numel() * 4
    cache = expert.attach_feature_cache(3 * one)
    out = expert.feature_map(_images(5))
    assert len(cache) == 3 and cache.bytes == 3 * one
    assert out.shape[0] == 5
    with pytest.raises(ValueError, match="positive size"):
        FeatureCache(0)


def test_feature_cache_is_a_train_setting_outside_the_trial_key() -> None:
    plain = TrainSpec.model_validate({"steps": 5})
    cached = TrainSpec.model_validate({"steps": 5, "feature_cache_mb": 256})
    assert cached.feature_cache_mb == 256 and cached.stages[0].steps == 5
    assert plain.semantic() == cached.semantic()
    staged = TrainSpec.model_validate({"stages": [{"name": "sft", "steps": 5}], "feature_cache_mb": 8, "lr": 0.1})
    assert staged.feature_cache_mb == 8 and staged.stages[0].lr == 0.1


def test_saved_maps_serve_a_later_model_with_the_same_weights_only(tmp_path) -> None:
    expert = _expert()
    expert.freeze()
    cache = expert.attach_feature_cache(2**30)
    images = _images(4)
    first = expert.feature_map(images)
    path = cache.save(tmp_path, expert)
    assert path is not None and path.is_file() and not list(tmp_path.glob("*.partial"))
    assert cache.save(tmp_path, expert) is None  # nothing new since: the file is not written again

    twin = _expert()  # same seed: same weights, a fresh process would build it the same way
    twin.freeze()
    later = twin.attach_feature_cache(2**30)
    assert later.load(tmp_path, twin) == 4
    assert torch.equal(twin.feature_map(images), first) and later.misses == 0

    other = _expert()
    with torch.no_grad():
        next(other.parameters()).mul_(2.0)
    other.freeze()
    assert other.attach_feature_cache(2**30).load(tmp_path, other) == 0  # other weights: other file


def test_maps_are_not_saved_once_the_weights_moved_on(tmp_path) -> None:
    expert = _expert()
    expert.freeze()
    cache = expert.attach_feature_cache(2**30)
    expert.feature_map(_images(2))
    with torch.no_grad():
        next(expert.parameters()).add_(1.0)
    assert cache.save(tmp_path, expert) is None and not list(tmp_path.iterdir())


def test_evaluation_under_inference_mode_uses_the_cache() -> None:
    expert = _expert()
    expert.freeze()
    cache = expert.attach_feature_cache(2**30)
    images = _images(3)
    with torch.inference_mode():
        first = expert.feature_map(images)
        again = expert.feature_map(images)
    assert torch.equal(first, again) and cache.hits == 3


def test_maps_cached_during_inference_serve_training_later() -> None:
    expert = _expert()
    expert.freeze()
    expert.attach_feature_cache(2**30)
    images = _images(2)
    with torch.inference_mode():
        expert.feature_map(images)
    weight = torch.ones(1, requires_grad=True)
    (expert.feature_map(images) * weight).sum().backward()  # an inference tensor here would raise
    assert weight.grad is not None
