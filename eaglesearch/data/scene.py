"""What a synthetic image holds and how it is drawn and described: the scene model, palettes, :func:`render`
(pixels) and :func:`describe` (the caption). Task generators (``tasks.py``) build scenes; the writer
(``synthetic.py``) renders and stores them; the tiny world's pretext tasks (``eaglesearch/train/pretext_tasks.py``) read the
same scenes for their labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35), "green": (35, 160, 55), "blue": (35, 75, 215),
    "yellow": (235, 195, 20), "purple": (135, 55, 175), "orange": (240, 125, 25),
}
SHAPES = ("circle", "square", "triangle")
GLYPHS: dict[str, tuple[tuple[int, int], ...]] = {
    "plus": tuple((2, i) for i in range(5)) + tuple((i, 2) for i in (0, 1, 3, 4)),
    "cross": tuple((i, i) for i in range(5)) + tuple((i, 4 - i) for i in (0, 1, 3, 4)),
}
ARROWS: dict[str, tuple[tuple[int, int], ...]] = {
    "right arrow": tuple((i, 2) for i in range(5)) + ((3, 1), (3, 3), (2, 0), (2, 4)),
    "left arrow": tuple((i, 2) for i in range(5)) + ((1, 1), (1, 3), (2, 0), (2, 4)),
}
"""The ``arrow`` task's marks, on the same 5×5 cells as :data:`GLYPHS` and with the same ink (nine cells): a shaft
with a head at one end, the two mirror images of each other, with the same bounding box. Kept apart from
:data:`GLYPHS` so that the detail and locate tasks, which draw from ``sorted(GLYPHS)``, draw exactly what they drew
before the arrows existed; :func:`render` draws a scene's glyph from either."""
MARKS = GLYPHS | ARROWS
GLYPH_INK = (25, 25, 25)
GLYPH_CELLS = 5


def glyph_side(canvas: int) -> int:
    """Side in pixels of the small mark: 5 cells of ``canvas // 128`` pixels (5 px up to a 255 px canvas, 10 px with
    2-pixel strokes on 256 px), so the mark keeps its size relative to an expert's patches as canvases grow."""
    return GLYPH_CELLS * max(1, canvas // 128)

# color_solo: four hues of identical luma (PIL "L" = 120 for each), so a grayscale view cannot tell them apart.
ISO_COLORS: dict[str, tuple[int, int, int]] = {
    "red": (255, 63, 63), "green": (44, 174, 44), "blue": (70, 120, 255), "purple": (198, 60, 228),
}
ORIENTATIONS = ("horizontal", "vertical")
WORDS = ("cat", "sun", "map", "box", "key", "pen", "cup", "hat")
"""What the ``ocr`` task writes: short words of the same length, so only reading tells them apart."""
TEXT_SIZE_FRACTION = 0.0625
"""Font size of a written word as a fraction of the canvas side (16 px on a 256 px canvas: legible at full
resolution, a grey smudge at a quarter of it)."""
TEXT_INK = (20, 20, 20)

@dataclass(frozen=True)
class Shape:
    """A filled shape; ``rgb`` overrides the fill ``COLORS[color]`` (the isoluminant palette of ``color_solo``);
    ``width`` (``None``: ``size``) makes its box wider than tall (the ``oval`` of the ``aspect`` task)."""

    kind: str
    color: str
    x: int
    y: int
    size: int
    rgb: tuple[int, int, int] | None = None
    width: int | None = None


@dataclass(frozen=True)
class Grating:
    """A disc of stripes: grey ``mid ± amp`` in bands of ``period / 2`` pixel rows (horizontal) or columns
    (vertical), ``+amp`` where ``((row or column) + phase) // (period / 2)`` is even; full contrast out to half the
    radius, then a raised-cosine fade to the background at ``radius`` (no hard edge to alias)."""

    orientation: str
    cx: int
    cy: int
    radius: int
    mid: int
    amp: int
    phase: int
    period: int = 2


@dataclass(frozen=True)
class Scene:
    """Everything drawn in one image; ``glyph`` is ``(name, x, y)`` (top-left corner, name a key of :data:`MARKS`)
    for the detail, locate and arrow tasks,
    ``grating`` the striped disc of the grating task (drawn over the shapes), ``text`` a written word ``(word, x, y)``
    (top-left corner of its box) for the ocr task; ``width`` (``None``: square) the image's width when it is wider
    than the canvas height (the ``aspect`` task)."""

    background: tuple[int, int, int]
    shapes: tuple[Shape, ...]
    glyph: tuple[str, int, int] | None = None
    grating: Grating | None = None
    text: tuple[str, int, int] | None = None
    width: int | None = None




def _draw_grating(image: Image.Image, g: Grating) -> Image.Image:
    side = image.size[0]
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float64)
    r = np.hypot(xs + 0.5 - g.cx, ys + 0.5 - g.cy)
    inner = g.radius / 2
    fade = np.clip((g.radius - r) / (g.radius - inner), 0.0, 1.0)
    weight = (0.5 - 0.5 * np.cos(np.pi * fade))[..., None]
    line = ys if g.orientation == "horizontal" else xs
    band = (line.astype(np.int64) + g.phase) // (g.period // 2)
    stripes = np.where(band % 2 == 0, g.mid + g.amp, g.mid - g.amp)[..., None]
    pixels = np.asarray(image, dtype=np.float64) * (1.0 - weight) + stripes * weight
    return Image.fromarray(np.rint(pixels).clip(0, 255).astype(np.uint8))


def render(scene: Scene, canvas: int) -> Image.Image:
    """Draw a scene as an RGB image of side ``canvas`` (``scene.width`` × ``canvas`` for a wide scene)."""
    image = Image.new("RGB", (scene.width or canvas, canvas), scene.background)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        fill, box = s.rgb or COLORS[s.color], (s.x, s.y, s.x + (s.width or s.size) - 1, s.y + s.size - 1)
        if s.kind in ("circle", "oval"):
            draw.ellipse(box, fill=fill)
        elif s.kind == "square":
            draw.rectangle(box, fill=fill)
        else:
            draw.polygon([(s.x + s.size // 2, s.y), (s.x, s.y + s.size - 1), (s.x + s.size - 1, s.y + s.size - 1)],
                         fill=fill)
    if scene.glyph is not None:
        name, gx, gy = scene.glyph
        cell = max(1, canvas // 128)
        for col, row in MARKS[name]:
            draw.rectangle((gx + col * cell, gy + row * cell, gx + col * cell + cell - 1, gy + row * cell + cell - 1),
                           fill=GLYPH_INK)
    if scene.text is not None:
        word, tx, ty = scene.text
        draw.text((tx, ty), word, font=text_font(canvas), fill=TEXT_INK)
    if scene.grating is not None:
        image = _draw_grating(image, scene.grating)
    return image


def text_font(canvas: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's bundled FreeType font (no system font needed) at the canvas's text size."""
    return ImageFont.load_default(size=max(6, round(TEXT_SIZE_FRACTION * canvas)))


def text_box(word: str, canvas: int) -> tuple[int, int]:
    """(width, height) in pixels that :func:`render` gives ``word`` on a ``canvas`` px image."""
    _left, _top, right, bottom = text_font(canvas).getbbox(word)
    return int(right), int(bottom)


# Where an object's centre falls on a 3×3 grid over the canvas, as (row, column) → phrase.
PLACES: dict[tuple[int, int], str] = {
    (0, 0): "at the top left", (0, 1): "at the top", (0, 2): "at the top right",
    (1, 0): "on the left", (1, 1): "in the center", (1, 2): "on the right",
    (2, 0): "at the bottom left", (2, 1): "at the bottom", (2, 2): "at the bottom right",
}
LARGE = 0.3  # a shape at least this fraction of the canvas side is "large" (color_solo's; the others are 14–22%)


def _cell(cx: float, cy: float, canvas: int) -> tuple[int, int]:
    return min(2, max(0, int(3 * cy // canvas))), min(2, max(0, int(3 * cx // canvas)))


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(scene: Scene, canvas: int) -> str:
    """A one-sentence caption of what :func:`render` draws (see :func:`_describe_square`; wide scenes: their shapes
    and places)."""
    if scene.width is not None:
        return _describe_wide(scene, canvas)
    return _describe_square(scene, canvas)


def _describe_wide(scene: Scene, canvas: int) -> str:
    """The caption of a wide scene (``aspect`` task): its shapes, placed on a 3×3 grid over the whole image."""
    assert scene.width is not None
    parts = []
    for s in scene.shapes:
        col = min(2, max(0, int(3 * (s.x + (s.width or s.size) / 2) // scene.width)))
        row = min(2, max(0, int(3 * (s.y + s.size / 2) // canvas)))
        parts.append(f"{_article(s.color)} {s.kind} {PLACES[(row, col)]}")
    return f"a wide image: {_join(parts)} on a light background."


def _describe_square(scene: Scene, canvas: int) -> str:
    """A one-sentence caption of what :func:`render` draws, e.g. ``"3 shapes on a light background: a red circle
    at the top left, a blue square in the center and an orange triangle at the bottom."``.

    Deterministic in the scene: shapes are listed in reading order of their centres (3×3 grid cell, then y, x);
    the count is a digit (the ``count`` answers are digits). The small mark (``detail``) is named with its glyph,
    the disc (``grating*``) with its stripe direction and fineness (``fine``: period 2, ``coarse``: wider)."""
    shapes = sorted(scene.shapes, key=lambda s: (_cell(s.x + s.size / 2, s.y + s.size / 2, canvas), s.y, s.x))
    parts = []
    for s in shapes:
        size = "large " if s.size >= LARGE * canvas else ""
        place = PLACES[_cell(s.x + s.size / 2, s.y + s.size / 2, canvas)]
        parts.append(f"{_article(size + s.color)} {s.kind} {place}")
    things = []
    if shapes:
        things.append(f"{len(shapes)} shape{'s' if len(shapes) > 1 else ''} on a light background: {_join(parts)}")
    if scene.glyph is not None:
        name, gx, gy = scene.glyph
        place = PLACES[_cell(gx + glyph_side(canvas) / 2, gy + glyph_side(canvas) / 2, canvas)]
        things.append(f"a small dark arrow pointing {name.split()[0]} {place}" if name in ARROWS
                      else f"a small dark {name} mark {place}")
    if scene.text is not None:
        word, tx, ty = scene.text
        width, height = text_box(word, canvas)
        things.append(f"the word {word} written {PLACES[_cell(tx + width / 2, ty + height / 2, canvas)]}")
    if scene.grating is not None:
        g = scene.grating
        fineness = "fine" if g.period <= 2 else "coarse"
        things.append(f"a large gray disc {PLACES[_cell(g.cx, g.cy, canvas)]} with {fineness} {g.orientation} "
                      "stripes" + ("" if shapes else " on a light background"))
    return "; ".join(things or ["an empty light background"]) + "."


