"""Pix2Struct vision-encoder expert (Eagle's expert E: OCR / document understanding).

``paper``: the encoder of Pix2Struct-Large (transformers ``Pix2StructVisionModel``; hub ``google/pix2struct-large``,
width 1536, 18 layers, 24 heads, gated-GELU MLP 3968, patch 16). Eagle hands it the 1024-px image through the
Pix2Struct processor with at most 2048 patches, which for a square image is 45×45 = 2025 patches of 16 px (a 720-px
image); so the preset feeds 720 px and gets a 45×45 map × 1536 channels, BILINEAR to the common grid (resample mode
``bilinear``: 45 → 32 keeps 1536 channels). ``tiny``: width 128, 2 layers, 4 heads, patch 16, random init, with
``max_patches = (resolution/16)²`` (the row/column embedding tables are sized to fit); 128 px gives 8×8.

The encoder in torch is ``pix2struct_model.py``. Input: the processor's ``flattened_patches`` are built here in torch, batched, without the (slow, numpy/PIL)
processor: the image is resized to ``resolution`` (bilinear, antialiased), standardised per image as the processor
does (mean and unbiased std over all pixels on the 0–255 scale, std floored at 1/√(3·R²)), cut into 16×16 patches
in row-major order, each flattened as (row, column, channel), and prefixed with 1-based row and column ids.
Features: ``last_hidden_state``, i.e. after the encoder's final (T5-style) LayerNorm — unlike the other experts this
keeps the final norm, because Eagle's Pix2Struct tower reads ``last_hidden_state``. ``trainable_blocks`` counts
encoder layers (the final norm is trainable with any N ≥ 1). Not tileable (Pix2Struct is variable-resolution by
design) and not a plain ViT (no ``vit_*`` stage access).
"""

from __future__ import annotations

from eaglesearch.model.experts.preset import ExpertPreset
from eaglesearch.model.experts.registry import ExpertFamily, register_expert

PATCH = 16
FEATURE_LAYER = "encoder last_hidden_state (after the final LayerNorm, as Eagle), patches reshaped row-major"

PRESETS = {
    "tiny": ExpertPreset(
        architecture="Pix2StructVisionModel",
        resolution=256,
        stride=PATCH,
        mean=(0.0, 0.0, 0.0),  # unused: per-image standardisation
        std=(1.0, 1.0, 1.0),
        feature_layer=FEATURE_LAYER,
        kwargs={"hidden_size": 128, "d_ff": 512, "d_kv": 32, "num_hidden_layers": 2, "num_attention_heads": 4},
        resample="bilinear",
        blocks=2,
        pretext="read", pretext_settings={"steps": 300, "batch_size": 16},
    ),
    "paper": ExpertPreset(
        architecture="Pix2StructVisionModel",
        resolution=720,
        stride=PATCH,
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        feature_layer=FEATURE_LAYER,
        kwargs={"hidden_size": 1536, "d_ff": 3968, "d_kv": 64, "num_hidden_layers": 18, "num_attention_heads": 24,
                "seq_len": 4096},
        weights="google/pix2struct-large",
        sized=False,
        resample="bilinear",
        blocks=18,
        source="google/pix2struct-large, encoder only (Pix2StructVisionModel; the decoder is never loaded)",
        output=(45, 1536),
    ),
}

PIX2STRUCT = register_expert(ExpertFamily(
    name="pix2struct",
    description="Pix2Struct encoder (Pix2Struct-Large, 45×45 patches, in the paper)",
    presets=PRESETS,
    build="eaglesearch.model.experts.pix2struct_model:build_pix2struct",
))
