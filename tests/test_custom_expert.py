"""Bring your own encoder: a declared factory becomes an expert family; EfficientNet-Lite0 with real weights."""

from __future__ import annotations

import pytest
import torch

from eaglesearch.model.experts.custom import load_factory, register_custom_expert
from eaglesearch.spec.custom_expert import CustomExpertSpec
from examples import efficientnet_lite0 as lite0


def test_every_package_weight_maps_onto_timm_by_shape_and_changes_the_network() -> None:
    import timm

    random = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = lite0.map_keys(lite0.package_state_dict(), random.state_dict())
    assert set(mapped) == set(random.state_dict()) and len(mapped) == 296
    pretrained = lite0.build_classifier(pretrained=True).eval()
    assert not torch.equal(pretrained.conv_stem.weight, random.conv_stem.weight)
    assert sum(p.numel() for p in pretrained.parameters()) == pytest.approx(4.65e6, rel=0.02)


def test_pretrained_features_are_1280x7x7_and_deterministic() -> None:
    encoder = lite0.build(pretrained=True).eval()
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        first, second = encoder(pixels), encoder(pixels)
    assert first.shape == (1, 1280, 7, 7) and torch.equal(first, second)
    assert bool((first >= 0).all()) and bool((first <= 6).all())  # after the head's ReLU6


def test_a_declared_expert_trains_beside_a_built_in_one() -> None:
    from eaglesearch.execution.planner import _Vocabulary
    from eaglesearch.model import build_eagle, resolve_expert
    from eaglesearch.spec import ExpertSpec, ModelSpec

    family = register_custom_expert(CustomExpertSpec.model_validate(lite0.DECLARATION))
    assert register_custom_expert(CustomExpertSpec.model_validate(lite0.DECLARATION)) is family  # idempotent
    resolved = resolve_expert(ExpertSpec(name="effnet_lite0", resolution=128))
    assert resolved.pretrained is True and resolved.resolution == 128
    spec = ModelSpec.model_validate({"experts": [{"name": "clip"}, {"name": "effnet_lite0", "resolution": 128}],
                                     "grid": 4})
    model = build_eagle(spec, _Vocabulary(400), seed=0)
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    tokens = model.encode_images(images)
    assert tokens.shape == (2, 16, model.lm.config.hidden_size)
    tokens.sum().backward()
    assert model.experts["effnet_lite0"].encoder.net.conv_stem.weight.grad is not None


def test_a_wrong_factory_or_declaration_is_named() -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        load_factory("no_such_module:build")
    with pytest.raises(ValueError, match="has no callable 'nothing'"):
        load_factory("examples.efficientnet_lite0:nothing")
    wrong = CustomExpertSpec.model_validate({**lite0.DECLARATION, "name": "effnet_wrong", "channels": 320})
    register_custom_expert(wrong)
    from eaglesearch.model.experts import build_expert
    from eaglesearch.spec import ExpertSpec

    expert = build_expert(ExpertSpec(name="effnet_wrong", pretrained=False, resolution=64))
    with pytest.raises(ValueError, match="declares"):
        expert(expert.preprocess(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)))
