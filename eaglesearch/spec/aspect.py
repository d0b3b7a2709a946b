"""How a recipe turns images of any aspect ratio into square model inputs (``data.image``).

``eaglesearch/data/aspect.py`` implements the three modes; this is what a recipe or search space declares. In YAML
``data.image: pad`` is shorthand for ``data.image: {resize: pad}``. The default (``square``, squash to the square
canvas) is left out of the trial's canonical JSON, so every trial declared before this field existed keeps its key.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from eaglesearch.spec.base import SpecModel

ResizeMode = Literal["square", "pad", "dynamic"]
_TILE_FIELDS = ("min_tiles", "max_tiles", "thumbnail")


class ImagePolicySpec(SpecModel):
    """``square`` (squash), ``pad`` (LLaVA/Eagle expand-to-square on a mean colour) or ``dynamic`` (InternVL /
    Eagle 2 tiles: a grid of ``min_tiles``..``max_tiles`` square tiles closest to the image's aspect ratio, plus a
    thumbnail)."""

    resize: ResizeMode = Field(
        default="square", description="square: squash to the square canvas; pad: centre on a square of the mean "
        "colour, then resize; dynamic: a per-image grid of square tiles (+ thumbnail) closest to its aspect ratio")
    min_tiles: int = Field(default=1, ge=1, le=64, description="dynamic: fewest tiles in a grid")
    max_tiles: int = Field(default=6, ge=1, le=64, description="dynamic: most tiles in a grid (InternVL 2.5 "
                           "finetuning: 6; Eagle 2: 12)")
    thumbnail: bool = Field(default=True, description="dynamic: append the whole image squashed to one tile when "
                            "the grid has more than one tile")
    pad_color: tuple[int, int, int] | None = Field(
        default=None, description="pad: RGB fill in 0-255; default: LLaVA / Eagle's expand2square colour, the CLIP "
        "image processor's mean x 255 = (122, 116, 104)")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        return {"resize": data} if isinstance(data, str) else data

    @model_validator(mode="after")
    def _check(self) -> ImagePolicySpec:
        if self.resize != "dynamic":
            stray = [f for f in _TILE_FIELDS if f in self.model_fields_set]
            if stray:
                verb, them = ("applies", "it") if len(stray) == 1 else ("apply", "them")
                raise ValueError(f"{', '.join(stray)} only {verb} to resize: dynamic (this policy is "
                                 f"'{self.resize}'); set resize: dynamic or remove {them}")
        if self.pad_color is not None:
            if self.resize != "pad":
                raise ValueError(f"pad_color only applies to resize: pad (this policy is '{self.resize}'); "
                                 "set resize: pad or remove pad_color")
            if any(not 0 <= c <= 255 for c in self.pad_color):
                raise ValueError(f"pad_color {list(self.pad_color)} must be three integers from 0 to 255")
        if self.min_tiles > self.max_tiles:
            raise ValueError(f"min_tiles ({self.min_tiles}) is above max_tiles ({self.max_tiles}); lower min_tiles "
                             "or raise max_tiles")
        return self

    @model_serializer(mode="wrap")
    def _only_what_applies(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump only the fields the mode reads (``pad``: ``{resize: pad}``), so a dump validates again and two
        equal policies have one canonical form."""
        data = handler(self)
        if self.resize != "dynamic":
            for name in _TILE_FIELDS:
                data.pop(name, None)
        if self.pad_color is None:
            data.pop("pad_color", None)
        return data

    @property
    def max_images(self) -> int:
        """The most square images one picture becomes (tiles + thumbnail): what token budgets are checked against."""
        if self.resize != "dynamic":
            return 1
        return self.max_tiles + (1 if self.thumbnail and self.max_tiles > 1 else 0)

    @property
    def label(self) -> str:
        """Short name for trial labels: ``""`` (square), ``pad``, ``dyn1-6+t`` (tiles 1 to 6, thumbnail)."""
        if self.resize == "square":
            return ""
        if self.resize == "pad":
            return "pad"
        return f"dyn{self.min_tiles}-{self.max_tiles}" + ("+t" if self.thumbnail else "")


def is_default_policy(policy: ImagePolicySpec) -> bool:
    """Left out of dumps when it is the default, so adding the field kept every existing trial's key."""
    return policy == ImagePolicySpec()
