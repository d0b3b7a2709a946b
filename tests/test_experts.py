"""Behaviour of the vision-expert registry: every family at both presets, common-grid resampling, tiling, partial
freezing, ViT stage access, Pix2Struct's patch input and pretrained-weight errors.

Paper presets are built on the ``meta`` device: full-size architectures (ViT-L, ConvNeXt-XXL, ...) without memory
or weights.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from eaglesearch.model.experts import (
    VisionExpert,
    build_expert,
    expert_names,
    get_family,
    get_preset,
    resolve_expert,
)
from eaglesearch.model.experts.pix2struct_model import flattened_patches, standardize
from eaglesearch.model.resample import (
    expert_grid_channels,
    grid_channels,
    to_common_grid,
    to_grid,
)
from eaglesearch.model.tiling import TiledExpert
from eaglesearch.spec import ExpertSpec
from tests.support import faulty_expert

torch.set_num_threads(1)

FAMILIES = ("clip", "convnext", "sam", "dinov2", "eva02", "siglip", "pix2struct")
VITS = ("clip", "siglip", "dinov2", "eva02")
NOT_VITS = ("convnext", "sam", "pix2struct")
REAL_ONLY = ("ppocr_det", "ppocr_rec")  # one real network in every preset: tests/test_ppocr_experts.py

# family: (resolution, channels, native grid, channels on the common grid) — tiny on an 8×8 grid, paper on 32×32
TINY = {
    "clip": (64, 128, 4, 128), "convnext": (128, 128, 4, 128), "sam": (256, 128, 16, 512),
    "dinov2": (112, 128, 8, 128), "eva02": (112, 128, 8, 128), "siglip": (64, 128, 4, 128),
    "pix2struct": (256, 128, 16, 128),
}
PAPER = {
    "clip": (448, 1024, 32, 1024), "convnext": (1024, 3072, 32, 3072), "sam": (1024, 256, 64, 1024),
    "dinov2": (448, 1024, 32, 1024), "eva02": (1024, 1024, 64, 1024), "siglip": (378, 1152, 27, 1152),
    "pix2struct": (720, 1536, 45, 1536),
}


def images(batch: int = 2, side: int = 96, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (batch, 3, side, side), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


def tiny(name: str, seed: int = 0, **fields: object) -> VisionExpert:
    torch.manual_seed(seed)
    return build_expert(ExpertSpec(name=name, **fields)).eval()


def paper_on_meta(name: str, **fields: object) -> VisionExpert:
    with torch.device("meta"):
        return build_expert(ExpertSpec(name=name, preset="paper", **{"pretrained": False, **fields}))


def trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count(modules: list[torch.nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


# ------------------------------------------------------------------------------------------ registry and shapes


def test_registry_lists_every_family_and_which_tile() -> None:
    assert {*FAMILIES, *REAL_ONLY} == set(expert_names())  # no test-only family (tests/support/faulty_expert.py)
    assert {n for n in expert_names() if get_family(n).tileable} == set(VITS)
    for name in FAMILIES:
        assert resolve_expert(ExpertSpec(name=name)).resolution == TINY[name][0]
        assert resolve_expert(ExpertSpec(name=name, preset="paper")).resolution == PAPER[name][0]


@pytest.mark.parametrize("name", FAMILIES)
def test_tiny_expert_shapes_and_grid_tokens(name: str) -> None:
    resolution, channels, side, width = TINY[name]
    expert = tiny(name)
    assert (expert.resolution, expert.channels, expert.native_grid) == (resolution, channels, side)
    assert expert.grid_channels(8) == width == expert_grid_channels(expert, 8)
    pixels = expert.preprocess(images())
    assert pixels.shape == (2, 3, resolution, resolution)
    with torch.no_grad():
        features = expert(pixels)
        tokens = expert.grid_tokens(images(), 8)
    assert features.shape == (2, channels, side, side)
    assert tokens.shape == (2, expert.token_count(8), width) and expert.token_count(8) == 64
    assert torch.allclose(tokens, to_common_grid(expert, features, 8))


@pytest.mark.parametrize("name", FAMILIES)
def test_paper_expert_builds_offline_on_meta_and_runs_forward(name: str) -> None:
    resolution, channels, side, width = PAPER[name]
    expert = paper_on_meta(name)
    assert (expert.resolution, expert.channels, expert.native_grid) == (resolution, channels, side)
    assert expert.grid_channels(32) == width
    assert len(expert.freezable_blocks()) == get_preset(ExpertSpec(name=name, preset="paper")).blocks
    with torch.device("meta"):
        features = expert(torch.empty(1, 3, resolution, resolution))
        tokens = to_common_grid(expert, features, 32)
    assert features.is_meta and features.shape == (1, channels, side, side)
    assert tokens.shape == (1, 1024, width)


def test_tiny_presets_declare_their_block_counts() -> None:
    for name in FAMILIES:
        assert len(tiny(name).freezable_blocks()) == get_preset(ExpertSpec(name=name)).blocks


def test_eagle_x5_channel_concat_width_at_paper_scale() -> None:
    """Eagle-X5 = clip, convnext, sam, eva02 ("det"), pix2struct: 1024+3072+1024+1024+1536 = 7680 channels. EVA and
    Pix2Struct reach 32×32 bilinearly; pixel-unshuffling EVA's 64×64 map (SAM's way) would give 4096."""
    x5 = [paper_on_meta(name) for name in ("clip", "convnext", "sam", "eva02", "pix2struct")]
    assert [e.resample for e in x5] == ["bilinear", "bilinear", "auto", "bilinear", "bilinear"]
    assert [e.grid_channels(32) for e in x5] == [1024, 3072, 1024, 1024, 1536]
    assert sum(e.grid_channels(32) for e in x5) == 7680
    eva = x5[3]
    assert grid_channels(eva.channels, eva.native_grid, 32, "auto") == 4096


def test_normalisation_follows_each_checkpoint() -> None:
    white = torch.full((1, 3, 16, 16), 255, dtype=torch.uint8)
    expected = {"dinov2": 0.485, "eva02": 0.48145466, "siglip": 0.5, "sam": 0.485, "clip": 0.48145466}
    for name, mean in expected.items():
        expert = tiny(name)
        assert expert.mean.flatten()[0].item() == pytest.approx(mean)
        assert torch.allclose(expert.preprocess(white)[0, :, 0, 0], (1 - expert.mean.flatten()) / expert.std.flatten())
    assert torch.allclose(tiny("siglip").preprocess(white), torch.ones(1, 3, 64, 64))
    standardised = tiny("pix2struct").preprocess(images(side=128))
    assert torch.allclose(standardised.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    assert torch.allclose(standardised.std(dim=(1, 2, 3)), torch.ones(2), atol=1e-5)


# ---------------------------------------------------------------------------------------------- resampling


def test_resample_modes() -> None:
    x = torch.randn(2, 5, 16, 16)
    assert to_grid(x, 8, "bilinear").shape == (2, 64, 5)
    assert torch.allclose(to_grid(x, 8, "bilinear"),
                          F.interpolate(x, size=(8, 8), mode="bilinear", align_corners=True).flatten(2).mT)
    assert torch.equal(to_grid(x, 8, "unshuffle"), to_grid(x, 8, "auto"))
    assert to_grid(x, 8, "unshuffle").shape == (2, 64, 20) and grid_channels(5, 16, 8, "unshuffle") == 20
    assert torch.equal(to_grid(x, 16, "bilinear"), x.flatten(2).mT)
    assert to_grid(torch.randn(1, 5, 12, 12), 8, "auto").shape == (1, 64, 5)
    with pytest.raises(ValueError, match="12 is not a multiple of 8"):
        to_grid(torch.randn(1, 5, 12, 12), 8, "unshuffle")
    with pytest.raises(ValueError, match="unknown resample mode 'nearest'"):
        grid_channels(5, 16, 8, "nearest")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------- resolution strategies


@pytest.mark.parametrize(("resolution", "side"), [(64, 4), (128, 8), (192, 12)])
def test_clip_interpolates_position_embeddings(resolution: int, side: int) -> None:
    expert = tiny("clip", resolution=resolution)
    with torch.no_grad():
        features = expert(expert.preprocess(images()))
        tokens = expert.grid_tokens(images(), 8)
    assert expert.native_grid == side and features.shape == (2, 128, side, side)
    assert tokens.shape == (2, 64, 128)  # bilinear to the common grid at every resolution: width stays 128


@pytest.mark.parametrize(("resolution", "side"), [(448, 32), (672, 48)])
def test_paper_clip_resolutions_on_meta(resolution: int, side: int) -> None:
    expert = paper_on_meta("clip", resolution=resolution)
    with torch.device("meta"):
        features = expert(torch.empty(1, 3, resolution, resolution))
    assert expert.native_grid == side and features.shape == (1, 1024, side, side)
    assert expert.grid_channels(32) == 1024


def test_tiled_clip_tokens_global_view_first_then_tiles() -> None:
    tiled = tiny("clip", resolution=64, resize="tile", tiles=2)
    assert isinstance(tiled, TiledExpert)
    assert (tiled.num_views, tiled.channels, tiled.token_count(8)) == (5, 128, 5 * 64)
    picture = images(batch=2, side=128)
    with torch.no_grad():
        tokens = tiled.tokens(picture, 8)
        assert torch.equal(tokens, tiled.grid_tokens(picture, 8))
        assert torch.allclose(tiled.tokens(tiled.preprocess(picture), 8), tokens)
        untiled = tiled.expert.grid_tokens(picture, 8)
        top_right = tiled.expert.grid_tokens(picture[:, :, :64, 64:], 8)
        bottom_left = tiled.expert.grid_tokens(picture[:, :, 64:, :64], 8)
    assert tokens.shape == (2, 320, 128)
    assert torch.allclose(tokens[:, :64], untiled, atol=1e-5)  # the global view is the untiled expert on the image
    assert torch.allclose(tokens[:, 2 * 64:3 * 64], top_right, atol=1e-5)  # then tiles row-major
    assert torch.allclose(tokens[:, 3 * 64:4 * 64], bottom_left, atol=1e-5)
    assert not torch.allclose(tokens[:, :64], tokens[:, 64:128])


@pytest.mark.parametrize("name", NOT_VITS)
def test_tiling_rejected_for_non_vit_families(name: str) -> None:
    with pytest.raises(ValueError, match=f"expert '{name}' cannot be tiled.*clip, dinov2, eva02, siglip"):
        resolve_expert(ExpertSpec(name=name, resize="tile"))
    with pytest.raises(TypeError, match="cannot be tiled"):
        TiledExpert(tiny(name), 2)


# -------------------------------------------------------------------------------------------------- freezing


def test_clip_partial_freeze_counts_and_gradients() -> None:
    expert = tiny("clip")
    blocks = expert.freezable_blocks()
    expert.freeze()
    assert trainable(expert) == 0
    expert.freeze(trainable_blocks=1)
    assert trainable(expert) == count(blocks[-1:]) > 0
    expert.freeze(trainable_blocks=2)
    assert trainable(expert) == count(blocks) < sum(p.numel() for p in expert.parameters())
    with pytest.raises(ValueError, match="trainable_blocks=3 but it has 2 blocks; use a value from 1 to 2"):
        expert.freeze(trainable_blocks=3)

    expert.freeze(trainable_blocks=1)
    expert.train()
    assert blocks[-1].training and not blocks[0].training and not expert.backbone.patch_embed.training
    expert(expert.preprocess(images())).square().mean().backward()
    last = {id(p) for p in blocks[-1].parameters()}
    for name, p in expert.named_parameters():
        if id(p) in last:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name


@pytest.mark.parametrize(("name", "extra"), [("convnext", None), ("sam", "neck"), ("pix2struct", "layernorm")])
def test_partial_freeze_of_other_families(name: str, extra: str | None) -> None:
    expert = tiny(name)
    owner = expert.encoder if name == "pix2struct" else expert.backbone
    after = [getattr(owner, extra)] if extra else []
    expert.freeze(trainable_blocks=1)
    assert trainable(expert) == count([expert.freezable_blocks()[-1], *after])
    expert.freeze(trainable_blocks=len(expert.freezable_blocks()))
    assert trainable(expert) == count([*expert.freezable_blocks(), *after])


def test_trainable_blocks_validated_before_building() -> None:
    assert resolve_expert(ExpertSpec(name="clip", freeze=True, trainable_blocks=2)).trainable_blocks == 2
    assert resolve_expert(ExpertSpec(name="clip", preset="paper", freeze=True, trainable_blocks=24))
    with pytest.raises(ValueError, match="'convnext' \\(preset 'tiny'\\) has 4 blocks.*trainable_blocks=5"):
        resolve_expert(ExpertSpec(name="convnext", freeze=True, trainable_blocks=5))
    with faulty_expert.registered(), pytest.raises(ValueError, match="has 0 blocks"):  # a declared encoder
        resolve_expert(ExpertSpec(name=faulty_expert.NAME, freeze=True, trainable_blocks=1))


def test_tiled_expert_freezes_its_wrapped_blocks() -> None:
    tiled = tiny("clip", resolution=64, resize="tile", tiles=2)
    tiled.freeze(trainable_blocks=1)
    assert trainable(tiled) == count(tiled.expert.freezable_blocks()[-1:])
    tiled.train()
    assert tiled.expert.freezable_blocks()[-1].training and not tiled.expert.backbone.patch_embed.training


# ------------------------------------------------------------------------------------------ ViT stage access


@pytest.mark.parametrize("name", VITS)
@pytest.mark.parametrize("resolution", [None, 64])
def test_vit_stages_compose_to_forward(name: str, resolution: int | None) -> None:
    if resolution and name in ("dinov2", "eva02"):
        resolution = 70  # patch 14
    expert = tiny(name, resolution=resolution)
    assert expert.is_vit and len(expert.vit_blocks()) == 2
    pixels = expert.preprocess(images())
    with torch.no_grad():
        x, hw = expert.vit_embed(pixels)
        assert hw == (expert.native_grid, expert.native_grid)
        assert x.shape[1] == hw[0] * hw[1] + expert.num_prefix_tokens
        for block in expert.vit_blocks():
            x = block(x)
        assert torch.allclose(expert.vit_to_map(x, hw), expert(pixels), atol=1e-6)


def test_eva_blocks_take_the_grid_for_non_square_inputs() -> None:
    expert = tiny("eva02")
    pixels = torch.randn(1, 3, 112, 140)
    with torch.no_grad():
        x, hw = expert.vit_embed(pixels)
        assert hw == (8, 10)
        with pytest.raises(ValueError, match="do not make a square grid"):
            expert.vit_blocks()[0](x)
        for block in expert.vit_blocks():
            x = block(x, hw=hw)
        assert torch.allclose(expert.vit_to_map(x, hw), expert(pixels), atol=1e-6)


@pytest.mark.parametrize("name", NOT_VITS)
def test_non_vits_have_no_stage_access(name: str) -> None:
    expert = tiny(name)
    assert not expert.is_vit
    for call in (lambda: expert.vit_embed(torch.zeros(1, 3, 64, 64)), expert.vit_blocks,
                 lambda: expert.vit_to_map(torch.zeros(1, 4, 8), (2, 2))):
        with pytest.raises(TypeError, match=f"expert '{name}'.*is not a plain ViT"):
            call()


# ------------------------------------------------------------------------------------------------ Pix2Struct


def test_pix2struct_patches_match_the_processor() -> None:
    from transformers import Pix2StructImageProcessor

    picture = images(batch=2, side=64)
    processor = Pix2StructImageProcessor(patch_size={"height": 16, "width": 16}, max_patches=16, is_vqa=False)
    reference = processor(images=list(picture), return_tensors="pt", max_patches=16)["flattened_patches"]
    ours = flattened_patches(standardize(picture.float()), 16)
    assert ours.shape == (2, 16, 2 + 3 * 16 * 16)
    assert torch.allclose(ours, reference, atol=1e-5)
    assert ours[0, :5, :2].tolist() == [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1]]  # 1-based row/col ids, row-major


def test_pix2struct_forward_is_the_encoder_output_as_a_map() -> None:
    expert = tiny("pix2struct", resolution=64)
    pixels = expert.preprocess(images())
    with torch.no_grad():
        patches = flattened_patches(pixels, 16)
        reference = expert.encoder(flattened_patches=patches, attention_mask=torch.ones(2, 16)).last_hidden_state
        features = expert(pixels)
    assert features.shape == (2, 128, 4, 4)
    assert torch.allclose(features.flatten(2).mT, reference, atol=1e-5)


def test_pix2struct_loads_a_local_full_model_checkpoint(tmp_path: Path) -> None:
    source = tiny("pix2struct", seed=1)
    state = {f"encoder.{k}": v for k, v in source.encoder.state_dict().items()}
    state["decoder.lm_head.weight"] = torch.zeros(3, 3)
    path = tmp_path / "pix2struct_tiny.pth"
    torch.save(state, path)
    loaded = tiny("pix2struct", seed=2, pretrained=True, checkpoint=str(path))
    assert all(torch.equal(v, source.encoder.state_dict()[k]) for k, v in loaded.encoder.state_dict().items())
    torch.save({"encoder.embeddings.patch_projection.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(RuntimeError, match="does not fit this architecture"):
        tiny("pix2struct", pretrained=True, checkpoint=str(path))


# ------------------------------------------------------------------------------------------- pretrained offline


@pytest.mark.parametrize(("name", "hub_id"), [
    ("dinov2", "timm/vit_large_patch14_dinov2.lvd142m"),
    ("eva02", "Yuxin-CV/EVA-02"),
    ("siglip", "timm/vit_so400m_patch14_siglip_384.webli"),
    ("pix2struct", "google/pix2struct-large"),
])
def test_pretrained_offline_names_hub_id_and_checkpoint(
    name: str, hub_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(RuntimeError) as err:
        build_expert(ExpertSpec(name=name, preset="paper", pretrained=True))
    assert f"'{hub_id}'" in str(err.value) and "`checkpoint:`" in str(err.value)
    with pytest.raises(ValueError, match="no published weights"):
        resolve_expert(ExpertSpec(name=name, preset="tiny_random", pretrained=True))


def test_pretrained_defaults_follow_the_preset() -> None:
    """Paper presets load their published weights unless told not to; tiny presets are random-init."""
    assert resolve_expert(ExpertSpec(name="clip", preset="paper")).pretrained is True
    assert resolve_expert(ExpertSpec(name="clip", preset="paper", pretrained=False)).pretrained is False
    assert resolve_expert(ExpertSpec(name="clip", preset="tiny")).pretrained is True  # its pretext weights
    assert resolve_expert(ExpertSpec(name="clip", preset="tiny_random")).pretrained is False
    assert resolve_expert(ExpertSpec(name="clip", preset="tiny", checkpoint="/w/clip.pt")).pretrained is True
