"""Pretext tasks: what each tiny expert family is pretrained on, mirroring what its real counterpart learned.

The Eagle paper's premise is experts pretrained on *different* tasks whose specialties complement each other. In the
tiny world every family is pretrained, at its own resolution, on a pretext task of the same kind as the real one,
over scenes of the synthetic world (drawn with their own seeds, never the benchmark's images). What each pretext
labels decides what the expert's features make easy to read, and its input resolution decides what it can see at
all (the benchmark's small mark and written words are 5 and 12 px on a 256 px canvas):

==============  ============  ==========================================================================  ==========
family          pretext       labels (what the features must hold)                                         resolution
==============  ============  ==========================================================================  ==========
clip, siglip    ``caption``   image–caption supervision: which colour–shape phrases the caption has, and     64 px
                              how many shapes it counts (multi-label + count)
convnext        ``classify``  ImageNet-style single label: colour and kind of the largest shape             128 px
sam             ``segment``   dense masks: per feature cell, which of circle / square / triangle / plus      256 px
                              mark / cross mark / text covers it
pix2struct      ``read``      reading printed text: which word of a 48-word lexicon (the ocr words among     256 px
                              forty others) is printed
eva02           ``masked``    masked image modelling: the mean colour of each masked patch                  112 px
dinov2          ``views``     self-distillation without labels: two crops of one scene agree on a           112 px
                              prototype distribution given by a slowly moving (EMA) teacher
==============  ============  ==========================================================================  ==========

So by construction: CLIP and SigLIP know colours, shapes and counts but, at 64 px, see neither the small mark nor
the print; ConvNeXt knows colours and shapes (a redundant expert next to CLIP); SAM knows *where* things are at
full resolution, marks included, and which mark it is, but not letters; Pix2Struct reads letters and little else.
``tests/test_pretext.py`` checks these specialties on held-out scenes with linear probes.

A pretext is a :class:`Pretext`: its labels from a scene, a head on the expert's feature map, and its loss.
:func:`pretrain_expert` trains expert + head on freshly rendered batches (deterministic for a seed and thread
count) and returns the expert's weights and its loss curve.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from eaglesearch.data.scene import COLORS, SHAPES, WORDS, Scene, glyph_side, text_box
from eaglesearch.data.tasks import TASKS, printed_scene
from eaglesearch.data.world import WORLD_TASKS
from eaglesearch.model.experts import VisionExpert

LEXICON = (*WORDS, "ant", "bag", "bed", "bus", "car", "cow", "day", "dog", "ear", "egg", "eye", "fan", "fig",
           "fox", "gem", "gum", "hen", "ice", "ink", "jam", "jar", "jet", "kit", "leg", "lid", "mug", "net", "nut",
           "oak", "owl", "pig", "pot", "rat", "rug", "sea", "sky", "tea", "toy", "van", "web")
"""What the ``read`` pretext prints: the ocr task's eight words among forty others of the same length."""
PAIRS = [(c, s) for c in COLORS for s in SHAPES]
DENSE = ("circle", "square", "triangle", "plus", "cross", "text")


def _read_scene(rng: random.Random, canvas: int) -> tuple[Scene, str]:
    word = rng.choice(LEXICON)
    return printed_scene(rng, canvas, word, 0, 2), word


def world_scene(rng: random.Random, canvas: int) -> Scene:
    """A scene of any world task (the benchmark's kinds of images, drawn from the pretext's own seed)."""
    return TASKS[rng.choice(WORLD_TASKS)](rng, canvas)[0]


def _cells(scene: Scene, canvas: int, grid: int) -> np.ndarray:
    """(len(DENSE), grid, grid) 0/1: which classes cover each cell of a grid × grid partition of the canvas."""
    out = np.zeros((len(DENSE), grid, grid), dtype=np.float32)
    step = canvas / grid

    def mark(cls: str, x0: float, y0: float, x1: float, y1: float) -> None:
        c0, c1 = int(x0 // step), int(min(canvas - 1, x1) // step)
        r0, r1 = int(y0 // step), int(min(canvas - 1, y1) // step)
        out[DENSE.index(cls), r0:r1 + 1, c0:c1 + 1] = 1.0

    for s in scene.shapes:
        mark(s.kind, s.x, s.y, s.x + s.size - 1, s.y + s.size - 1)
    if scene.glyph is not None:
        name, gx, gy = scene.glyph
        mark(name, gx, gy, gx + glyph_side(canvas) - 1, gy + glyph_side(canvas) - 1)
    if scene.text is not None:
        word, tx, ty = scene.text
        width, height = text_box(word, canvas)
        mark("text", tx, ty, tx + width - 1, ty + height - 1)
    return out


class PooledHead(nn.Module):
    """Mean- and max-pooled feature map → MLP → ``out`` logits (global labels)."""

    def __init__(self, channels: int, out: int, hidden: int = 256) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden), nn.GELU(), nn.Linear(hidden, out))

    def forward(self, fmap: Tensor) -> Tensor:
        flat = fmap.flatten(2)
        return self.mlp(torch.cat([flat.mean(-1), flat.amax(-1)], dim=-1))


class DenseHead(nn.Module):
    """A 1×1 convolution: per feature cell, ``out`` values (dense labels)."""

    def __init__(self, channels: int, out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, out, kernel_size=1)

    def forward(self, fmap: Tensor) -> Tensor:
        return self.conv(fmap)


@dataclass(frozen=True)
class Pretext:
    """One pretext task. ``sample(rng, canvas, grid)`` draws a scene and its labels (a dict of numpy arrays);
    ``head(channels, grid)`` builds the head; ``loss(expert, head, images, labels, step)`` is the batch loss."""

    name: str
    description: str
    sample: Callable[[random.Random, int, int], tuple[Scene, dict[str, np.ndarray]]]
    head: Callable[[int, int], nn.Module]
    loss: Callable[..., Tensor]
    needs_teacher: bool = False


def features(expert: VisionExpert, images: Tensor) -> Tensor:
    return expert(expert.preprocess(images))


# ----------------------------------------------------------------------------------------------------- caption

def _caption_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene = world_scene(rng, canvas)
    pairs = np.zeros(len(PAIRS), dtype=np.float32)
    for s in scene.shapes:
        pairs[PAIRS.index((s.color, s.kind))] = 1.0
    return scene, {"pairs": pairs, "count": np.array(min(len(scene.shapes), 5), dtype=np.int64)}


def _caption_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor],
                  step: int) -> Tensor:
    logits = head(features(expert, images))
    return (F.binary_cross_entropy_with_logits(logits[:, :len(PAIRS)], labels["pairs"]) * 5.0
            + F.cross_entropy(logits[:, len(PAIRS):], labels["count"]))


# ---------------------------------------------------------------------------------------------------- classify

def _classify_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene = world_scene(rng, canvas)
    while not scene.shapes:
        scene = world_scene(rng, canvas)
    largest = max(scene.shapes, key=lambda s: s.size)
    return scene, {"label": np.array(PAIRS.index((largest.color, largest.kind)), dtype=np.int64)}


def _classify_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor],
                   step: int) -> Tensor:
    return F.cross_entropy(head(features(expert, images)), labels["label"])


# ----------------------------------------------------------------------------------------------------- segment

def _segment_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene = world_scene(rng, canvas)
    return scene, {"cells": _cells(scene, canvas, grid)}


def _segment_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor],
                  step: int) -> Tensor:
    logits = head(features(expert, images))
    cells = labels["cells"]
    # Marks and text cover a cell or two of the map: average the loss over each class's positive and negative cells
    # separately, so that the rare classes weigh as much as the common ones.
    loss = F.binary_cross_entropy_with_logits(logits, cells, reduction="none")
    pos = (loss * cells).sum((0, 2, 3)) / cells.sum((0, 2, 3)).clamp(min=1)
    neg = (loss * (1 - cells)).sum((0, 2, 3)) / (1 - cells).sum((0, 2, 3)).clamp(min=1)
    # Which mark: on the cells a mark covers, plus against cross (the other class's cells are too few among the
    # negatives to teach the difference).
    plus, cross = DENSE.index("plus"), DENSE.index("cross")
    marked = (cells[:, plus] + cells[:, cross]) > 0
    kind = torch.stack([logits[:, plus], logits[:, cross]], dim=-1)[marked]
    which = (cells[:, cross][marked] > 0).long()
    return (pos + neg).mean() + (F.cross_entropy(kind, which) if len(which) else 0.0)


# -------------------------------------------------------------------------------------------------------- read

def _read_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene, word = _read_scene(rng, canvas)
    return scene, {"word": np.array(LEXICON.index(word), dtype=np.int64)}


def _read_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor],
               step: int) -> Tensor:
    return F.cross_entropy(head(features(expert, images)), labels["word"])


# ------------------------------------------------------------------------------------------------------ masked

MASK_RATIO = 0.4


def _masked_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene = world_scene(rng, canvas)
    mask = np.zeros((grid, grid), dtype=np.float32)
    cells = rng.sample(range(grid * grid), round(MASK_RATIO * grid * grid))
    mask.flat[cells] = 1.0
    return scene, {"mask": mask}


def _masked_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor],
                 step: int) -> Tensor:
    mask = labels["mask"]  # (B, g, g), 1 = hidden
    grid = mask.shape[-1]
    x = expert.resize(images)  # [0, 1] at the expert's resolution
    target = F.adaptive_avg_pool2d(x, grid)  # (B, 3, g, g) mean colour per patch
    up = F.interpolate(mask[:, None], size=x.shape[-2:], mode="nearest")
    hidden = x * (1 - up) + 0.5 * up  # masked patches become flat grey
    pred = head(expert((hidden - expert.mean) / expert.std))
    err = ((pred - target) ** 2).mean(1)
    return (err * mask).sum() / mask.sum().clamp(min=1) * 10.0


# ------------------------------------------------------------------------------------------------------- views

PROTOTYPES = 64


def _views_sample(rng: random.Random, canvas: int, grid: int) -> tuple[Scene, dict[str, np.ndarray]]:
    scene = world_scene(rng, canvas)
    crops = np.array([[rng.uniform(0.0, 0.25), rng.uniform(0.0, 0.25), rng.uniform(0.75, 1.0),
                       rng.uniform(0.75, 1.0), float(rng.random() < 0.5)] for _ in range(2)], dtype=np.float32)
    return scene, {"crops": crops}


def _crop(images: Tensor, crops: Tensor) -> Tensor:
    side = images.shape[-1]
    out = []
    for img, (x0, y0, x1, y1, flip) in zip(images, crops.tolist(), strict=True):
        part = img[:, int(y0 * side):max(int(y0 * side) + 8, int(y1 * side)),
                   int(x0 * side):max(int(x0 * side) + 8, int(x1 * side))]
        part = F.interpolate(part[None].float(), size=(side, side), mode="bilinear", align_corners=False)[0]
        out.append(part.flip(-1) if flip else part)
    return torch.stack(out).round().clamp(0, 255).to(torch.uint8)


def _views_loss(expert: VisionExpert, head: nn.Module, images: Tensor, labels: dict[str, Tensor], step: int,
                teacher: tuple[VisionExpert, nn.Module], center: Tensor) -> Tensor:
    t_expert, t_head = teacher
    views = [_crop(images, labels["crops"][:, i]) for i in range(2)]
    with torch.no_grad():
        t_out = [t_head(features(t_expert, v)) for v in views]
        t_prob = [F.softmax((o - center) / 0.04, dim=-1) for o in t_out]
        center.mul_(0.9).add_(0.1 * torch.cat(t_out).mean(0))
    s_logp = [F.log_softmax(head(features(expert, v)) / 0.1, dim=-1) for v in views]
    return -0.5 * ((t_prob[0] * s_logp[1]).sum(-1).mean() + (t_prob[1] * s_logp[0]).sum(-1).mean())


PRETEXTS: dict[str, Pretext] = {p.name: p for p in (
    Pretext("caption", "image-caption supervision: colour-shape phrases and the count",
            _caption_sample, lambda c, g: PooledHead(c, len(PAIRS) + 6), _caption_loss),
    Pretext("classify", "single-label classification of the largest shape (colour and kind)",
            _classify_sample, lambda c, g: PooledHead(c, len(PAIRS)), _classify_loss),
    Pretext("segment", "dense masks: shapes, the two marks and text per feature cell",
            _segment_sample, lambda c, g: DenseHead(c, len(DENSE)), _segment_loss),
    Pretext("read", "reading: which word of a 48-word lexicon is printed",
            _read_sample, lambda c, g: PooledHead(c, len(LEXICON)), _read_loss),
    Pretext("masked", "masked image modelling: mean colour of each masked patch",
            _masked_sample, lambda c, g: DenseHead(c, 3), _masked_loss),
    Pretext("views", "self-distillation: two crops agree with an EMA teacher's prototypes",
            _views_sample, lambda c, g: PooledHead(c, PROTOTYPES), _views_loss, needs_teacher=True),
)}
