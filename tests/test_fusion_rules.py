"""Each fusion carries its constraints (a torch-free descriptor its class references) and each expert family says
whether it is a plain ViT: validation asks them, so a user's own ViT family can lead llava_hr like clip."""

from __future__ import annotations

import typing

import pytest
import torch

from eaglesearch.model import build_expert, validate_model
from eaglesearch.model.experts import ExpertFamily, TimmViTExpert, get_family, register_expert
from eaglesearch.model.experts.registry import unregister_expert
from eaglesearch.model.fusions import FUSIONS, build_fusion
from eaglesearch.model.fusions.rules import FUSION_RULES
from eaglesearch.spec import ExpertSpec, ModelSpec
from eaglesearch.spec.model import FusionName

CONVNEXT = ExpertSpec(name="convnext", resolution=128)


def test_every_fusion_class_references_the_rules_of_its_name() -> None:
    assert set(FUSION_RULES) == set(FUSIONS) == set(typing.get_args(FusionName))
    for name, cls in FUSIONS.items():
        assert cls.rules is FUSION_RULES[name]


@pytest.fixture
def my_vit():
    """A user's own ViT family, registered as an entry point's registration function would: clip's tiny
    architecture under another name, declared a plain ViT (``tileable``)."""
    clip = get_family("clip")
    family = register_expert(ExpertFamily(name="my_vit", description="a user's ViT", presets=dict(clip.presets),
                                          build=TimmViTExpert.from_spec, tileable=True))
    yield family
    unregister_expert(family.name)


def test_a_users_own_vit_family_can_lead_llava_hr(my_vit: ExpertFamily) -> None:
    spec = ModelSpec(experts=(ExpertSpec(name="my_vit", resolution=64, preset="tiny_random"),
                              CONVNEXT.model_copy(update={"preset": "tiny_random"})), fusion="llava_hr", grid=4)
    validate_model(spec)
    with torch.device("meta"):
        experts = [build_expert(e) for e in spec.experts]
        fusion = build_fusion(spec, experts, 32)
    assert fusion.num_tokens == 16


def test_a_vit_family_whose_preset_is_not_a_plain_vit_cannot_lead_llava_hr() -> None:
    det = ExpertSpec(name="eva02", preset="paper")  # EVA-02 ViTDet: windowed blocks, no block access
    with pytest.raises(ValueError) as err:
        validate_model(ModelSpec(experts=(det, ExpertSpec(name="convnext", preset="paper", resolution=1536)),
                                 fusion="llava_hr"))
    message = str(err.value)
    assert "must be a ViT with block access (clip, dinov2, eva02, siglip)" in message
    assert "its preset 'paper' is not one" in message and message.endswith("put a ViT first")
