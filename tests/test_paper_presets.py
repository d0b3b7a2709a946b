"""The paper presets are Eagle's encoders: each states its source checkpoint and output map, the built
architecture (on ``meta``, nothing downloaded) gives that map, and it is the one ``reference/eagle.md`` lists; the
EVA-02 ``paper`` preset is the ViTDet detection backbone, loadable from its detectron2 checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from eaglesearch.model.experts import build_expert, get_preset
from eaglesearch.model.experts.eva02 import VITDET
from eaglesearch.model.experts.eva02_model import Eva02DetExpert, build_eva02_vitdet
from eaglesearch.model.experts.eva02_vitdet import EvaViTDet
from eaglesearch.spec import ExpertSpec

# reference/eagle.md §1.2: native grid side and channels of each Eagle-X5 expert at its paper resolution
EAGLE_MAPS = {"clip": (32, 1024), "convnext": (32, 3072), "sam": (64, 256), "eva02": (64, 1024),
              "pix2struct": (45, 1536)}
TINY_DET = {"patch": 16, "dim": 64, "depth": 3, "heads": 4, "window": 2, "global_blocks": (2,), "pos_grid": 4}


def on_meta(name: str, preset: str = "paper"):
    with torch.device("meta"):
        return build_expert(ExpertSpec(name=name, preset=preset, pretrained=False))


@pytest.mark.parametrize("name", sorted(EAGLE_MAPS))
def test_paper_preset_states_its_source_and_the_map_eagle_md_lists(name: str) -> None:
    preset = get_preset(ExpertSpec(name=name, preset="paper"))
    assert preset.source and preset.output == EAGLE_MAPS[name]
    expert = on_meta(name)
    assert (expert.native_grid, expert.channels) == preset.output


def test_eva02_paper_is_windowed_vitdet_and_mim_is_kept_apart() -> None:
    det = on_meta("eva02")
    assert isinstance(det, Eva02DetExpert)
    assert get_preset(ExpertSpec(name="eva02", preset="paper")).architecture == VITDET
    windows = [block.window for block in det.backbone.blocks]
    assert len(windows) == 24 and [i for i, w in enumerate(windows) if w == 0] == [2, 5, 8, 11, 14, 17, 20, 23]
    assert set(windows) == {0, 16} and det.resolution == 1024
    assert "eva02_L_coco_det_sys_o365.pth" in (get_preset(ExpertSpec(name="eva02", preset="paper")).weights or "")
    with pytest.raises(ValueError, match="preset 'paper' cannot be tiled"):
        build_expert(ExpertSpec(name="eva02", preset="paper", pretrained=False, resize="tile"))
    mim = on_meta("eva02", "mim")
    assert not isinstance(mim, Eva02DetExpert) and mim.is_vit  # timm's global-attention EVA-02 (MIM weights)
    assert get_preset(ExpertSpec(name="eva02", preset="mim")).weights == "eva02_large_patch14_224.mim_m38m"


def test_window_attention_equals_global_attention_only_when_the_window_covers_the_map() -> None:
    torch.manual_seed(0)
    windowed = EvaViTDet(image_size=64, **{**TINY_DET, "global_blocks": ()})  # 4x4 map, 2x2 windows
    covering = EvaViTDet(image_size=64, **{**TINY_DET, "window": 4, "global_blocks": ()})
    global_ = EvaViTDet(image_size=64, **{**TINY_DET, "global_blocks": (0, 1, 2)})
    covering.load_state_dict(windowed.state_dict())
    global_.load_state_dict(windowed.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(covering(x), global_(x), atol=1e-5)
        assert not torch.allclose(windowed(x), global_(x), atol=1e-3)
        assert windowed(x).shape == (2, 64, 4, 4)


def _detectron2_file(path: Path, source: EvaViTDet) -> None:
    """A random checkpoint in the layout of eva02_L_coco_det_sys_o365.pth: the backbone under backbone.net.*
    (with its RoPE tables), detector parts beside it, all under 'model'."""
    state = {f"backbone.net.{k}": v.clone() for k, v in source.state_dict().items()}
    state["backbone.net.rope_win.freqs_cos"] = torch.randn(4, 16)
    state["backbone.net.rope_glb.freqs_sin"] = torch.randn(16, 16)
    state["backbone.simfp_2.0.weight"] = torch.randn(8, 64, 2, 2)
    state["roi_heads.box_predictor.0.cls_score.weight"] = torch.randn(81, 16)
    torch.save({"model": state, "iteration": 7}, path)


def test_paper_eva02_loads_the_detectron2_checkpoint_layout(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = EvaViTDet(image_size=64, **{**TINY_DET, "pos_grid": 3})  # the file's table size differs: adopted
    path = tmp_path / "eva02_L_coco_det_sys_o365.pth"
    _detectron2_file(path, source)
    preset = get_preset(ExpertSpec(name="eva02", preset="paper"))
    import dataclasses

    tiny = dataclasses.replace(preset, resolution=64, kwargs=TINY_DET)
    spec = ExpertSpec(name="eva02", preset="paper", resolution=64, pretrained=True, checkpoint=str(path))
    expert = build_eva02_vitdet(spec, tiny)
    loaded = expert.backbone.state_dict()
    assert loaded.keys() == source.state_dict().keys()
    assert all(torch.equal(loaded[k], v) for k, v in source.state_dict().items())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(expert(x), source(x))

    torch.save({"model": {"roi_heads.w": torch.zeros(2)}}, tmp_path / "heads_only.pth")
    with pytest.raises(RuntimeError, match="no EVA-02 backbone.*checkpoint:"):
        build_eva02_vitdet(spec.model_copy(update={"checkpoint": str(tmp_path / "heads_only.pth")}), tiny)
