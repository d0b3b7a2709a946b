"""A user's own vision encoder, declared like the built-in families: where its factory is and what it produces.

Only the declaration lives here (the spec layer imports no model code); ``eaglesearch.model.experts.custom``
imports the factory when the family is registered. A recipe or a search space declares encoders in a top-level
``experts:`` mapping keyed by name (:data:`Declarations`); every trial that uses one carries its declaration in its
``ExpertSpec.custom``, so the trial key (and a pre-aligned expert's artifact key) changes with the declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, SerializerFunctionWrapHandler, field_validator, model_serializer

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


Declarations = dict[str, CustomExpertSpec]
"""The ``experts:`` section: declarations by name (the key is the name; an entry may repeat it)."""


class DeclarationError(ValueError):
    """A declaration that cannot work (unimportable factory, wrong channels or stride); ``field`` names the
    declaration field to fix, so the loader can point at its line."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def named_declarations(value: Any) -> Any:
    """Fill each entry's ``name`` from its key (a ``mode="before"`` validator of an ``experts:`` section)."""
    if not isinstance(value, Mapping):
        return value
    out: dict[Any, Any] = {}
    for key, entry in value.items():
        if isinstance(entry, Mapping):
            if "name" in entry and entry["name"] != key:
                raise ValueError(f"declaration '{key}' has name '{entry['name']}'; drop the name (the key is the "
                                 "name) or make them equal")
            entry = {"name": key, **entry}
        out[key] = entry
    return out


class DeclaresExperts(SpecModel):
    """The top-level ``experts:`` section a recipe and a search space both have (one definition for both)."""

    experts: Declarations = Field(
        default_factory=dict, description="the user's own encoders by name (factory 'module:function', resolution, "
        "mean, std, channels, stride, feature_layer); usable wherever a built-in expert such as clip or sam is: "
        "model.experts, base, candidates, factors and pools")

    _named = field_validator("experts", mode="before")(named_declarations)

    @model_serializer(mode="wrap")
    def _omit_no_declarations(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """No ``experts`` key when nothing is declared (fingerprints of existing files stay as they were)."""
        data = handler(self)
        if not self.experts:
            data.pop("experts", None)
        return data
