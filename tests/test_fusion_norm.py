"""Per-expert feature normalisation before fusion (``model.fusion_norm``, eaglesearch/model/fusions/norm.py).

The norms on their own (statistics, learnable parameters), every fusion × norm on tiny random experts (shapes,
that each expert's features reach the fusion normalised, parameter counts, freezing with the projector, the meta
device), and the content keys: ``none`` keeps the keys trials had before the option existed.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from typing import get_args

import pytest
import torch

from eaglesearch.model import build_expert
from eaglesearch.model.experts import VisionExpert
from eaglesearch.model.fusions import FUSIONS, build_fusion, expert_tokens
from eaglesearch.model.fusions.norm import FUSION_NORMS, ExpertNorms, build_norm
from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec
from eaglesearch.spec.load import load_search_space
from eaglesearch.spec.model import FusionNormName
from eaglesearch.train.stages import prealign_model

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
GRID = 4
LM = LanguageModelSpec(hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96)
# clip@64: 4×4 map × 128 (the ViT query); convnext@128: 4×4 × 128; sam@128: 8×8 × 128, unshuffled to 4×4 × 512
EXPERTS = (ExpertSpec(name="clip", resolution=64, preset="tiny_random"),
           ExpertSpec(name="convnext", resolution=128, preset="tiny_random"),
           ExpertSpec(name="sam", resolution=128, preset="tiny_random"))
NORMS = ("none", "layernorm", "rmsnorm", "standardize")


def test_registry_covers_the_spec_names() -> None:
    assert set(FUSION_NORMS) == set(get_args(FusionNormName)) == set(NORMS)
    with pytest.raises(ValueError, match="unknown fusion_norm 'batchnorm'; choose one of none, layernorm"):
        build_norm("batchnorm", 8)


# ------------------------------------------------------------------------------------------------ the norms


def scaled_tokens() -> torch.Tensor:
    torch.manual_seed(0)
    return 3.0 + 5.0 * torch.randn(2, 6, 32)  # (B, N, C): far from zero mean and unit scale


@pytest.mark.parametrize("kind", NORMS)
def test_norm_keeps_the_shape_and_learns_only_where_it_should(kind: str) -> None:
    norm = build_norm(kind, 32)
    x = scaled_tokens()
    assert norm(x).shape == x.shape
    names = sorted(name for name, _ in norm.named_parameters())
    assert names == {"none": [], "standardize": [], "rmsnorm": ["weight"], "layernorm": ["bias", "weight"]}[kind]
    assert list(norm.buffers()) == []  # stateless: nothing to carry between stages or ranks


def test_standardize_gives_every_token_zero_mean_and_unit_variance_over_channels() -> None:
    y = build_norm("standardize", 32)(scaled_tokens())
    torch.testing.assert_close(y.mean(-1), torch.zeros(2, 6), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(2, 6), atol=1e-4, rtol=0)


def test_layernorm_starts_as_standardize_and_its_gain_and_bias_apply_per_channel() -> None:
    x = scaled_tokens()
    layer = build_norm("layernorm", 32)
    torch.testing.assert_close(layer(x), build_norm("standardize", 32)(x))
    with torch.no_grad():
        layer.weight.fill_(2.0)
        layer.bias.fill_(0.5)
    torch.testing.assert_close(layer(x), 2.0 * build_norm("standardize", 32)(x) + 0.5)


def test_rmsnorm_scales_every_token_to_unit_rms_without_centring() -> None:
    x = scaled_tokens()
    y = build_norm("rmsnorm", 32)(x)
    torch.testing.assert_close(y.pow(2).mean(-1).sqrt(), torch.ones(2, 6), atol=1e-4, rtol=0)
    torch.testing.assert_close(y * x.pow(2).mean(-1, keepdim=True).sqrt(), x, atol=1e-4, rtol=1e-5)


def test_expert_norms_normalise_maps_over_channels_as_they_do_tokens() -> None:
    norms = ExpertNorms("standardize", [8, 16])
    torch.manual_seed(1)
    features = 4.0 * torch.randn(2, 16, 3, 3) + 1.0  # (B, C, h, w)
    as_tokens = norms.tokens(1, features.flatten(2).transpose(1, 2))
    torch.testing.assert_close(norms.map(1, features).flatten(2).transpose(1, 2), as_tokens)
    with pytest.raises(ValueError, match="built for 8 channels; got a feature map"):
        norms.map(0, features)
    raw = ExpertNorms("none", [16])
    assert raw.map(0, features) is features and list(raw.parameters()) == []


# ----------------------------------------------------------------------------------------- inside the fusions


@pytest.fixture(scope="module")
def experts() -> list[VisionExpert]:
    torch.manual_seed(0)
    built = [build_expert(e) for e in EXPERTS]
    for expert in built:
        expert.eval()
    return built


def spec(fusion: str, norm: str, **update: object) -> ModelSpec:
    return ModelSpec(experts=EXPERTS, grid=GRID, fusion=fusion, fusion_norm=norm, lm=LM, **update)


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_every_fusion_runs_with_every_norm_and_counts_its_parameters(fusion: str, experts) -> None:
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    raw = build_fusion(spec(fusion, "none"), experts, LM.hidden_size)
    raw_params = sum(p.numel() for p in raw.parameters())
    widths = raw.norm.widths
    for norm in NORMS:
        torch.manual_seed(0)
        fused = build_fusion(spec(fusion, norm), experts, LM.hidden_size)
        with torch.no_grad():
            out = fused(experts, images, GRID)
        assert out.shape == (2, raw.num_tokens, raw.out_dim)
        assert torch.isfinite(out).all()
        extra = {"none": 0, "standardize": 0, "rmsnorm": sum(widths), "layernorm": 2 * sum(widths)}[norm]
        assert sum(p.numel() for p in fused.parameters()) == raw_params + extra
        assert fused.norm.widths == widths


def test_norm_widths_follow_what_each_fusion_reads(experts) -> None:
    widths = {name: build_fusion(spec(name, "layernorm"), experts, LM.hidden_size).norm.widths for name in FUSIONS}
    assert widths["channel_concat"] == widths["sequence_append"] == (128, 128, 512)  # grid tokens (sam unshuffled)
    assert widths["mini_gemini"] == widths["deformable"] == (128, 128, 128)  # query tokens, auxiliary maps
    assert widths["llava_hr"] == (128, 128, 128)  # the ViT's output map and the slow maps


def test_channel_concat_hands_the_projector_each_expert_standardised(experts) -> None:
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    fused = build_fusion(spec("channel_concat", "standardize"), experts, LM.hidden_size)
    with torch.no_grad():
        out = fused(experts, images, GRID)
        raw = [expert_tokens(e, images, GRID) for e in experts]
    start = 0
    for tokens in raw:
        part = out[..., start:start + tokens.shape[-1]]
        start += tokens.shape[-1]
        torch.testing.assert_close(part.mean(-1), torch.zeros(part.shape[:2]), atol=1e-4, rtol=0)
        torch.testing.assert_close(part.std(-1, unbiased=False), torch.ones(part.shape[:2]), atol=1e-3, rtol=0)
        torch.testing.assert_close(part, torch.nn.functional.layer_norm(tokens, tokens.shape[-1:], eps=1e-6))


def test_norm_parameters_freeze_with_the_projector() -> None:
    from eaglesearch.model import build_eagle, load_tokenizer
    from eaglesearch.spec import TokenizerSpec

    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=400), lambda: iter(["a b c"] * 50))
    for freeze in (False, True):
        model = build_eagle(spec("channel_concat", "layernorm", freeze_projector=freeze), tokenizer)
        flags = {p.requires_grad for p in model.fusion.norm.parameters()}
        assert flags == {not freeze}
        assert model.param_counts()["fusion"] == 2 * (128 + 128 + 512)


def test_fusion_with_a_norm_builds_on_the_meta_device() -> None:
    with torch.device("meta"):
        experts = [build_expert(e) for e in EXPERTS]
        fused = build_fusion(spec("mini_gemini", "rmsnorm"), experts, LM.hidden_size)
    assert all(p.is_meta for p in fused.norm.parameters())


# ---------------------------------------------------------------------------------------------- content keys


def test_none_keeps_the_keys_trials_had_before_the_option() -> None:
    loaded = load_search_space(ROOT / "search_spaces" / "tiny_fusion.yaml")
    mix = [ExpertSpec(name=n) for n in ("clip", "sam", "pix2struct")]
    before = {"channel_concat": "8bf5fde0883c3b32", "mini_gemini": "d59bfbc3fefcb1b3"}  # keys on main before it
    for fusion, key in before.items():
        assert loaded.factory.make(mix, {"model.fusion": fusion}).key == key
        assert loaded.factory.make(mix, {"model.fusion": fusion, "model.fusion_norm": "none"}).key == key
        normed = loaded.factory.make(mix, {"model.fusion": fusion, "model.fusion_norm": "layernorm"})
        assert normed.key != key and normed.model.fusion_norm == "layernorm"
    assert "fusion_norm" not in spec("channel_concat", "none").model_dump(mode="json")


def test_pre_alignment_trains_raw_features_whatever_the_mixture_norm() -> None:
    one = prealign_model(spec("channel_concat", "layernorm"), EXPERTS[0])
    assert one.fusion_norm == "none" and one.experts == (EXPERTS[0],)
