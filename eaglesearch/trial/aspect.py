"""A trial's image policy: the recipe's ``data.image`` with its pad colour resolved against the model.

``pad`` fills with ``data.image.pad_color`` when given, else with the first expert's normalisation mean × 255, as
LLaVA-1.5 / Eagle's ``expand2square`` fills with the image processor's mean (CLIP's gives (122, 116, 104)): the
padding then normalises to zero for that expert.
"""

from __future__ import annotations

from eaglesearch.data.aspect import ImagePolicy
from eaglesearch.model.experts import get_preset
from eaglesearch.spec import ExpertSpec, TrialSpec


def expert_mean_color(spec: ExpertSpec) -> tuple[int, int, int]:
    """An expert's normalisation mean (on [0,1] pixels) as an 8-bit RGB colour."""
    mean = spec.custom.mean if spec.custom is not None else get_preset(spec).mean
    r, g, b = (int(round(255 * m)) for m in mean)
    return r, g, b


def image_policy(trial: TrialSpec) -> ImagePolicy:
    """The :class:`ImagePolicy` that trains and evaluates ``trial``."""
    spec = trial.data.image
    fill = (0, 0, 0)
    if spec.resize == "pad":
        fill = spec.pad_color if spec.pad_color is not None else expert_mean_color(trial.model.experts[0])
    return ImagePolicy(resize=spec.resize, min_tiles=spec.min_tiles, max_tiles=spec.max_tiles,
                       thumbnail=spec.thumbnail, fill=fill)
