"""A user's own vision encoder, declared like the built-in families: where its factory is and what it produces.

Only the declaration lives here (the spec layer imports no model code); ``eaglesearch.model.experts.custom``
imports the factory when the family is registered.
"""

from __future__ import annotations

from pydantic import Field

from eaglesearch.spec.base import SpecModel

Triple = tuple[float, float, float]


class CustomExpertSpec(SpecModel):
    """One custom expert family. The factory is called as ``factory(pretrained: bool)`` and returns a module that
    maps normalised pixels (B, 3, resolution, resolution) to a feature map (B, channels, resolution/stride, ...)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$", description="registry name, used like clip or sam")
    factory: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", description="importable 'module:function'")
    resolution: int = Field(gt=0, description="input side in pixels")
    mean: Triple = Field(description="per-channel mean on [0,1] pixels")
    std: Triple = Field(description="per-channel std on [0,1] pixels")
    channels: int = Field(gt=0, description="channels of the feature map")
    stride: int = Field(gt=0, description="input pixels per feature-map cell")
    feature_layer: str = Field(description="which layer the features come from, for people reading the plan")
    pretrained: bool = Field(default=True, description="the factory can load trained weights (pretrained: true)")
    description: str = ""
