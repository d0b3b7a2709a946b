"""The Pix2Struct encoder as a vision expert (declared in ``pix2struct.py``, whose docstring says what it feeds
and reads): torch patching and standardisation, and loading the encoder alone from a full checkpoint."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from transformers import Pix2StructVisionConfig, Pix2StructVisionModel

from eaglesearch.model.experts.base import ExpertPreset, VisionExpert
from eaglesearch.model.experts.weights import ensure_hub_reachable, local_checkpoint, offline_message
from eaglesearch.spec import ExpertSpec


def standardize(images: Tensor) -> Tensor:
    """Per-image standardisation of float images on the 0–255 scale, exactly as ``Pix2StructImageProcessor``."""
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    std = images.std(dim=(1, 2, 3), keepdim=True)
    floor = 1.0 / (images[0].numel() ** 0.5)
    return (images - mean) / std.clamp(min=floor)


def flattened_patches(pixels: Tensor, patch: int) -> Tensor:
    """(B,3,H,W) standardised pixels → (B, rows·cols, 2 + 3·patch²): 1-based row id, column id, patch values."""
    batch, channels, height, width = pixels.shape
    if height % patch or width % patch:
        raise ValueError(f"Pix2Struct needs image sides that are multiples of its patch size {patch}; got "
                         f"{height}×{width}")
    rows, cols = height // patch, width // patch
    patches = pixels.reshape(batch, channels, rows, patch, cols, patch).permute(0, 2, 4, 3, 5, 1)
    patches = patches.reshape(batch, rows * cols, patch * patch * channels)
    row_ids = torch.arange(1, rows + 1, device=pixels.device, dtype=pixels.dtype).repeat_interleave(cols)
    col_ids = torch.arange(1, cols + 1, device=pixels.device, dtype=pixels.dtype).repeat(rows)
    ids = torch.stack([row_ids, col_ids], dim=-1).expand(batch, -1, -1)
    return torch.cat([ids, patches], dim=-1)


class Pix2StructExpert(VisionExpert):
    """The Pix2Struct encoder on a fixed square resolution: a (B, hidden, R/16, R/16) map."""

    def __init__(self, name: str, resolution: int, preset: ExpertPreset, encoder: Pix2StructVisionModel) -> None:
        config = encoder.config
        if resolution % preset.stride:
            raise ValueError(f"expert '{name}': resolution {resolution} is not a multiple of its patch size "
                             f"{preset.stride}")
        side = resolution // preset.stride
        if side >= config.seq_len:
            raise ValueError(f"expert '{name}': {side}×{side} patches at {resolution} px exceed the encoder's "
                             f"{config.seq_len - 1} row/column positions; lower the resolution")
        super().__init__(name, resolution, config.hidden_size, side, preset.mean, preset.std, preset.resample)
        self.patch = preset.stride
        self.feature_layer = preset.feature_layer
        self.encoder = encoder

    def preprocess(self, images: Tensor) -> Tensor:
        """uint8 (B,3,S,S) → (B,3,R,R) resized and standardised per image (Pix2Struct's normalisation)."""
        return standardize(self.resize(images) * 255.0)

    def forward(self, pixels: Tensor) -> Tensor:
        """Every patch is real (no padding), so the encoder runs without an attention mask; this also keeps the
        forward free of data-dependent branches, so it runs on the meta device (FLOP counting)."""
        patches = flattened_patches(pixels, self.patch)
        hidden = self.encoder.embeddings(patches)
        hidden = self.encoder.encoder(hidden, attention_mask=None).last_hidden_state
        tokens = self.encoder.layernorm(hidden)
        side = pixels.shape[-2] // self.patch
        return tokens.reshape(tokens.shape[0], side, pixels.shape[-1] // self.patch, -1).permute(0, 3, 1, 2)

    def freezable_blocks(self) -> list[nn.Module]:
        return list(self.encoder.encoder.layer)

    def post_block_modules(self) -> list[nn.Module]:
        return [self.encoder.layernorm]


def build_pix2struct(spec: ExpertSpec, preset: ExpertPreset) -> Pix2StructExpert:
    """Random init from the preset's config, a local weights file, or a hub checkpoint (``checkpoint`` or the
    preset's ``weights``; a full Pix2Struct model, of which only the encoder is loaded: :func:`load_encoder`)."""
    assert spec.resolution is not None, "resolve the spec with registry.resolve_expert first"
    return Pix2StructExpert(spec.name, spec.resolution, preset, _encoder(spec, preset))


def _config(spec: ExpertSpec, preset: ExpertPreset) -> Pix2StructVisionConfig:
    assert spec.resolution is not None
    kwargs: dict[str, Any] = dict(preset.kwargs)
    if preset.sized:  # row/column tables sized to max_patches = (R/16)² (at least side + 1 entries)
        side = spec.resolution // preset.stride
        kwargs["seq_len"] = max(side * side, side + 1)
    return Pix2StructVisionConfig(patch_embed_hidden_size=3 * preset.stride**2, **kwargs)


def _encoder(spec: ExpertSpec, preset: ExpertPreset) -> Pix2StructVisionModel:
    where = f"expert '{spec.name}' (preset '{spec.preset}', transformers Pix2StructVisionModel)"
    if not spec.pretrained or (spec.checkpoint is None and preset.weights is None):  # tiny: pretext weights
        return Pix2StructVisionModel(_config(spec, preset))
    try:
        path = local_checkpoint(spec.checkpoint)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{where}: {err}") from None
    if path is not None:
        return _load_file(path, Pix2StructVisionModel(_config(spec, preset)), where)
    hub_id = spec.checkpoint or preset.weights
    if hub_id is None:
        raise ValueError(f"{where}: preset '{spec.preset}' is random-init and has no published weights; use "
                         "preset: paper, or set `checkpoint:` to a local weights file for this architecture")
    ensure_hub_reachable(hub_id, where)
    try:
        return load_encoder(hub_id)
    except OSError as err:
        raise RuntimeError(offline_message(where, hub_id, err)) from None


def load_encoder(name_or_path: str) -> Pix2StructVisionModel:
    """The vision encoder alone from a full Pix2Struct checkpoint (hub id or folder): its config's
    ``vision_config`` and its ``encoder.*`` tensors, meta-device initialised; the text decoder (about half of
    Pix2Struct-Large) is never built, and its tensors are not materialised from a safetensors file."""
    return Pix2StructVisionModel.from_pretrained(name_or_path, key_mapping={r"^encoder\.": ""},
                                                 low_cpu_mem_usage=True)


def _load_file(path: Any, encoder: Pix2StructVisionModel, where: str) -> Pix2StructVisionModel:
    """Load an encoder state dict, or a full Pix2Struct model's (its ``encoder.`` keys), from a local file."""
    if str(path).endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if any(k.startswith("encoder.embeddings.") for k in state):
        state = {k.removeprefix("encoder."): v for k, v in state.items() if k.startswith("encoder.")}
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise RuntimeError(f"{where}: checkpoint {path} does not fit this architecture "
                           f"({str(err).splitlines()[0]}); point `checkpoint:` at a Pix2Struct encoder (or full "
                           "model) of the preset's size, or change the expert's preset") from None
    return encoder
