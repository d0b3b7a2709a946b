"""The image policy: how an image of any aspect ratio becomes what the experts see (``data.image.resize``).

Experts take square uint8 images of side ``data.image_size`` (S) and resize them to their own resolution, so the
only question the data layer answers is how a W×H picture becomes square (reference/data_at_scale.md §2):

* ``square`` — squash it to S×S (bicubic), whatever its aspect ratio. What every trial did before this policy
  existed, and still the default: a wide image's contents are compressed horizontally.
* ``pad`` — LLaVA-1.5 / Eagle SFT's ``expand2square``: paste the image centred on a max(W,H) square canvas filled
  with a mean colour (LLaVA: the image processor's mean × 255, CLIP's (122,116,104)), then resize to S×S. Shapes keep
  their proportions; the long side sets the scale.
* ``dynamic`` — InternVL's ``dynamic_preprocess`` (Eagle 2's tiling): among the grids (cols, rows) with
  ``min_tiles ≤ cols·rows ≤ max_tiles`` pick the one whose ratio cols/rows is closest to W/H (on a tie, the larger
  grid only when the image's area exceeds half of the grid's pixel area), squash the image to (S·cols, S·rows), cut
  it into S×S tiles row-major, and append a squashed S×S thumbnail of the whole image when there is more than one
  tile and ``thumbnail`` is on. An image becomes 1 to ``max_tiles`` (+1) square images.

``square`` and ``pad`` give one (3,S,S) tensor per image, as before; ``dynamic`` gives a (T,3,S,S) stack whose T
varies per image. Every square image then costs the model the same ``num_visual_tokens`` (the fusion's count), so a
sample's visual tokens are T times that: :func:`fit_image_tokens` sizes its image-token run, :func:`stack_images`
pads stacks to the batch's largest T (the model reads each sample's T from its image-token count), and
:meth:`ImagePolicy.max_images` is the worst case the token budget (``max_length``) and memory are checked against.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from eaglesearch.data.image_ref import ImageRef, decode_rgb, open_image
from eaglesearch.spec.aspect import ImagePolicySpec

ResizeMode = Literal["square", "pad", "dynamic"]
Grid = tuple[int, int]  # (cols, rows): tiles across, tiles down


@dataclass(frozen=True)
class ImagePolicy:
    """One image policy (see the module docstring); ``fill`` is the RGB colour ``pad`` fills with."""

    resize: ResizeMode = "square"
    min_tiles: int = 1
    max_tiles: int = 6
    thumbnail: bool = True
    fill: tuple[int, int, int] = (0, 0, 0)

    def __post_init__(self) -> None:
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(f"image policy: need 1 <= min_tiles <= max_tiles; got min_tiles={self.min_tiles}, "
                             f"max_tiles={self.max_tiles}")

    @property
    def stacked(self) -> bool:
        """Whether an image becomes a (T,3,S,S) stack (``dynamic``) rather than one (3,S,S) image."""
        return self.resize == "dynamic"

    @property
    def max_images(self) -> int:
        """The most square images one picture can become: the worst case for tokens and memory."""
        if not self.stacked:
            return 1
        return self.max_tiles + (1 if self.thumbnail and self.max_tiles > 1 else 0)

    @classmethod
    def from_spec(cls, spec: ImagePolicySpec, pad_fill: tuple[int, int, int]) -> ImagePolicy:
        """The policy a recipe's ``data.image`` declares; ``pad`` fills with its ``pad_color``, else ``pad_fill``."""
        fill = (0, 0, 0)
        if spec.resize == "pad":
            fill = spec.pad_color if spec.pad_color is not None else pad_fill
        return cls(resize=spec.resize, min_tiles=spec.min_tiles, max_tiles=spec.max_tiles, thumbnail=spec.thumbnail,
                   fill=fill)

    def images_for(self, width: int, height: int, size: int) -> int:
        """How many square images a ``width``×``height`` picture becomes at tile side ``size``."""
        if not self.stacked:
            return 1
        cols, rows = closest_grid(width, height, self.min_tiles, self.max_tiles, size)
        tiles = cols * rows
        return tiles + (1 if self.thumbnail and tiles > 1 else 0)


SQUARE = ImagePolicy()


def candidate_grids(min_tiles: int, max_tiles: int) -> list[Grid]:
    """Every (cols, rows) with ``min_tiles ≤ cols·rows ≤ max_tiles``, fewest tiles first.

    Built exactly as InternVL builds ``target_ratios`` (a set, then a stable sort by tile count), so grids with the
    same tile count come in the same order and a tie between them resolves the same way."""
    grids = {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
             if min_tiles <= i * j <= max_tiles}
    return sorted(grids, key=lambda g: g[0] * g[1])


def closest_grid(width: int, height: int, min_tiles: int, max_tiles: int, size: int) -> Grid:
    """InternVL's ``find_closest_aspect_ratio``: the grid whose cols/rows is closest to ``width/height``; on an exact
    tie the later (larger) grid wins only if the image area exceeds half the grid's pixel area (``size``² per tile),
    so small images are not blown up into many tiles."""
    if width <= 0 or height <= 0:
        raise ValueError(f"an image must have a positive size; got {width}×{height}")
    aspect = width / height
    best, best_diff = (1, 1), float("inf")
    for cols, rows in candidate_grids(min_tiles, max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and width * height > 0.5 * size * size * cols * rows:
            best = (cols, rows)
    return best


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """LLaVA's ``expand2square``: ``image`` centred on a max(W,H) square of colour ``fill`` (unchanged if square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def dynamic_tiles(image: Image.Image, policy: ImagePolicy, size: int) -> list[Image.Image]:
    """InternVL's ``dynamic_preprocess``: the tiles of ``image`` row-major, then its thumbnail when there is more
    than one tile and ``policy.thumbnail``; every one ``size``×``size``."""
    cols, rows = closest_grid(*image.size, policy.min_tiles, policy.max_tiles, size)
    resized = image.resize((size * cols, size * rows), Image.Resampling.BICUBIC)
    tiles = [resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
             for r in range(rows) for c in range(cols)]
    if policy.thumbnail and len(tiles) > 1:
        tiles.append(image.resize((size, size), Image.Resampling.BICUBIC))
    return tiles


def _square(image: Image.Image, size: int) -> Tensor:
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).contiguous()


def apply_policy(image: Image.Image, policy: ImagePolicy, size: int) -> Tensor:
    """An RGB image as uint8 (3,S,S) (``square``, ``pad``) or (T,3,S,S) (``dynamic``), S = ``size``."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if policy.resize == "square":
        return _square(rgb, size)
    if policy.resize == "pad":
        return _square(expand_to_square(rgb, policy.fill), size)
    return torch.stack([_square(tile, size) for tile in dynamic_tiles(rgb, policy, size)])


def load_with_policy(path: ImageRef, policy: ImagePolicy, size: int) -> Tensor:
    """The image at ``path`` (a file or any :mod:`~eaglesearch.data.image_ref` reference) through
    :func:`apply_policy`."""
    return apply_policy(decode_rgb(path), policy, size)


def images_in(tensor: Tensor) -> int:
    """How many square images a :func:`apply_policy` result holds (1 for a (3,S,S) image)."""
    return 1 if tensor.dim() == 3 else int(tensor.shape[0])


def blank(policy: ImagePolicy, size: int) -> Tensor:
    """The image slot of a text-only sample: zeros shaped like one image under ``policy``."""
    shape = (1, 3, size, size) if policy.stacked else (3, size, size)
    return torch.zeros(shape, dtype=torch.uint8)


def stack_images(images: Sequence[Tensor]) -> Tensor:
    """A batch of policy outputs: (B,3,S,S) for single images; (B,T_max,3,S,S) for stacks, each padded with zero
    images to the largest T (a sample's real T is its image-token count over ``num_visual_tokens``)."""
    if all(image.dim() == 3 for image in images):
        return torch.stack(list(images))
    if not all(image.dim() == 4 for image in images):
        raise ValueError("a batch mixes single images (3,S,S) and tile stacks (T,3,S,S); every sample of a batch "
                         "must come from the same image policy")
    most = max(image.shape[0] for image in images)
    out = torch.zeros((len(images), most, *images[0].shape[1:]), dtype=images[0].dtype)
    for row, image in enumerate(images):
        out[row, : image.shape[0]] = image
    return out


def fit_image_tokens(ids: Sequence[int], labels: Sequence[int], image_id: int, tokens: int) -> tuple[list[int],
                                                                                                     list[int]]:
    """``ids``/``labels`` with their one run of ``image_id`` resized to ``tokens`` (labels keep their ignore value):
    a sample encoded for the worst case gets exactly the visual tokens its image stack makes."""
    positions = [i for i, t in enumerate(ids) if t == image_id]
    if not positions:
        return list(ids), list(labels)
    first, last = positions[0], positions[-1] + 1
    if last - first != len(positions):
        raise ValueError("a sample's image tokens are not one contiguous run; one <image> per sample is supported")
    ignore = labels[first]
    return ([*ids[:first], *[image_id] * tokens, *ids[last:]],
            [*labels[:first], *[ignore] * tokens, *labels[last:]])


@dataclass(frozen=True)
class ImageCounts:
    """How many square images the pictures of a data set become under a policy, over ``sampled`` of its
    ``total`` image samples (``counts``: images per picture → pictures). What plan, cost and memory use: the mean
    for FLOPs and visual tokens per sample, the largest for peaks."""

    counts: dict[int, int]
    sampled: int
    total: int

    @property
    def mean(self) -> float:
        return sum(k * n for k, n in self.counts.items()) / self.sampled if self.sampled else 1.0

    @property
    def most(self) -> int:
        return max(self.counts, default=1)

    def describe(self) -> str:
        """E.g. ``1: 40%, 3: 35%, 5: 25% (mean 2.7; 200 of 934k pictures read)``."""
        shares = ", ".join(f"{k}: {100 * n / self.sampled:.0f}%" for k, n in sorted(self.counts.items()))
        whole = "all" if self.sampled == self.total else f"{self.sampled} of {self.total}"
        return f"{shares} (mean {self.mean:.2f}; {whole} pictures read)"


def picture_size(path: ImageRef) -> tuple[int, int]:
    """(width, height) of an image from its header (nothing is decoded)."""
    with open_image(path) as image:
        return image.size


def count_images(paths: Iterable[ImageRef | None], policy: ImagePolicy, size: int, limit: int = 256) -> ImageCounts:
    """:class:`ImageCounts` over up to ``limit`` pictures spread evenly over ``paths`` (``None``: a text-only sample,
    not counted); only image headers are read, so a 934k-sample set is sized in a fraction of a second."""
    images = [p for p in paths if p is not None]
    if not images:
        return ImageCounts(counts={}, sampled=0, total=0)
    step = max(1, len(images) // limit)
    chosen = images[::step][:limit]
    counts = Counter(policy.images_for(*picture_size(p), size) if policy.stacked else 1 for p in chosen)
    return ImageCounts(counts=dict(counts), sampled=len(chosen), total=len(images))
