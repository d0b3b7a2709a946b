"""The synthetic tasks: each draws a scene and asks one question about it (see ``synthetic.py`` for the list).

A task is ``(rng, canvas) -> (scene, question, answer)``; :data:`TASKS` names them. Answers are short words or
digits that the tiny world's tokenizer keeps whole.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from eaglesearch.data.scene import (
    ARROWS,
    COLORS,
    GLYPHS,
    ISO_COLORS,
    ORIENTATIONS,
    SHAPES,
    WORDS,
    Grating,
    Scene,
    Shape,
    glyph_side,
    text_box,
)

Item = tuple[Scene, str, str]  # scene, question, answer
QUADRANTS = ("top left", "top right", "bottom left", "bottom right")


def free_boxes(rng: random.Random, canvas: int, sizes: list[int],
           taken: list[tuple[int, int, int]]) -> list[tuple[int, int]]:
    """Top-left corners for squares of ``sizes`` that overlap neither each other nor ``taken`` (x, y, size)."""
    margin = max(2, canvas // 32)
    for _ in range(100):
        placed = list(taken)
        corners = []
        for size in sizes:
            for _ in range(50):
                x, y = rng.randint(margin, canvas - size - margin), rng.randint(margin, canvas - size - margin)
                if all(x + size + margin <= a or a + s + margin <= x or y + size + margin <= b or b + s + margin <= y
                       for a, b, s in placed):
                    placed.append((x, y, size))
                    corners.append((x, y))
                    break
            else:
                break
        if len(corners) == len(sizes):
            return corners
    raise RuntimeError(f"could not place {len(sizes)} shapes on a {canvas}px canvas; use a larger image_size")


def place_shapes(rng: random.Random, canvas: int, kinds: list[str], colors: list[str],
            taken: list[tuple[int, int, int]] | None = None) -> tuple[Shape, ...]:
    sizes = [rng.randint(canvas * 14 // 100, canvas * 22 // 100) for _ in kinds]
    corners = free_boxes(rng, canvas, sizes, taken or [])
    return tuple(Shape(k, c, x, y, s) for k, c, (x, y), s in zip(kinds, colors, corners, sizes, strict=True))


def background(rng: random.Random) -> tuple[int, int, int]:
    return (rng.randint(215, 250), rng.randint(215, 250), rng.randint(215, 250))


def _count(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 5)
    kinds = [rng.choice(SHAPES) for _ in range(n)]
    colors = [rng.choice(list(COLORS)) for _ in range(n)]
    return Scene(background(rng), place_shapes(rng, canvas, kinds, colors)), "How many shapes are there?", str(n)


def _color(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 3)
    shapes = place_shapes(rng, canvas, rng.sample(SHAPES, n), rng.sample(list(COLORS), n))
    target = rng.choice(shapes)
    return Scene(background(rng), shapes), f"What color is the {target.kind}?", target.color


def _exist(rng: random.Random, canvas: int) -> Item:
    n = rng.randint(1, 3)
    shapes = place_shapes(rng, canvas, rng.sample(SHAPES, n), rng.sample(list(COLORS), n))
    anchor = rng.choice(shapes)
    if rng.random() < 0.5:
        color, kind, answer = anchor.color, anchor.kind, "yes"
    elif rng.random() < 0.5:  # keep a present colour, change the kind (kinds and colours are distinct per image)
        color, kind, answer = anchor.color, rng.choice([k for k in SHAPES if k != anchor.kind]), "no"
    else:  # keep a present kind, change the colour
        color, kind, answer = rng.choice([c for c in COLORS if c != anchor.color]), anchor.kind, "no"
    return Scene(background(rng), shapes), f"Is there a {color} {kind}?", answer


def mark_position(rng: random.Random, canvas: int, cols: range, rows: range) -> tuple[int, int]:
    """Top-left corner of the small mark, centred in a cell of the canvas's 16-cell type grid (marks, like print,
    sit on the grid), in one of ``cols`` × ``rows``."""
    step = max(1, canvas // 16)
    inset = (step - glyph_side(canvas)) // 2
    return rng.choice(cols) * step + inset, rng.choice(rows) * step + inset


def _detail(rng: random.Random, canvas: int) -> Item:
    name = rng.choice(sorted(GLYPHS))
    gx, gy = mark_position(rng, canvas, range(1, 15), range(1, 15))
    n = rng.randint(2, 3)
    shapes = place_shapes(rng, canvas, [rng.choice(SHAPES) for _ in range(n)], [rng.choice(list(COLORS)) for _ in range(n)],
                     taken=[(gx, gy, glyph_side(canvas))])
    return Scene(background(rng), shapes, (name, gx, gy)), "Is the small mark a plus or a cross?", name


def _arrow(rng: random.Random, canvas: int) -> Item:
    """"Which way does the small arrow point?": one small dark arrow (:data:`ARROWS`: 5×5 cells, pointing left or
    right, mirror images of each other with the same ink) placed like the detail task's mark, among 2-3 large
    distractor shapes; answers ``left`` / ``right`` (50%).

    Built for the paper's unfreezing finding (``benchmarks/findings.py`` finding 1): a skill whose cue the frozen
    pretrained expert exposes only weakly at a resolution it was not pretrained at. The arrow is a *medium* detail:
    10 px with 2-px strokes on a 256 px canvas, so CLIP fed 128 px gets 1-px strokes, and turning the arrow around
    changes pixels by a fifth of full contrast (at its pretraining 64 px the arrow is a 2-3 px blob, its direction
    only a shift of its ink). No expert's pretext labels a mark's direction (CLIP's caption pretext counts shapes,
    marks not among them, and names colour-shape pairs, with horizontal flips that keep every label), so nothing
    made the frozen features separate an arrow from its mirror image. ``benchmarks/unfreeze_probe.py`` measures it:
    a probe reads the direction from CLIP@128's adapted features (``expert_lr``) within a budget that leaves the
    frozen features' probe well below, and needs several times that budget on frozen ones. Opt-in: not a
    :data:`~eaglesearch.data.world.WORLD_TASKS` task, so the world's pretext scenes, tokenizer corpus, pretrained
    components and recipes are unchanged."""
    name = rng.choice(sorted(ARROWS))
    gx, gy = mark_position(rng, canvas, range(1, 15), range(1, 15))
    n = rng.randint(2, 3)
    shapes = place_shapes(rng, canvas, [rng.choice(SHAPES) for _ in range(n)],
                          [rng.choice(list(COLORS)) for _ in range(n)], taken=[(gx, gy, glyph_side(canvas))])
    return Scene(background(rng), shapes, (name, gx, gy)), "Which way does the small arrow point?", name.split()[0]


def _grating_of_period(period: int) -> Callable[[random.Random, int], Item]:
    def task(rng: random.Random, canvas: int) -> Item:
        orientation = rng.choice(ORIENTATIONS)
        radius = rng.randint(canvas * 30 // 100, canvas * 42 // 100)
        cx, cy = rng.randint(radius, canvas - radius), rng.randint(radius, canvas - radius)
        grating = Grating(orientation, cx, cy, radius, mid=rng.randint(105, 150), amp=rng.randint(75, 100),
                          phase=rng.randint(0, period - 1), period=period)
        return Scene(background(rng), (), grating=grating), "Are the stripes horizontal or vertical?", orientation
    return task


def _color_solo(rng: random.Random, canvas: int) -> Item:
    color = rng.choice(sorted(ISO_COLORS))
    size = rng.randint(canvas * 35 // 100, canvas * 55 // 100)
    (x, y), = free_boxes(rng, canvas, [size], [])
    shape = Shape(rng.choice(SHAPES), color, x, y, size, rgb=ISO_COLORS[color])
    return Scene(background(rng), (shape,)), "What color is the shape?", color



def _quadrant(x: float, y: float, canvas: int) -> str:
    return QUADRANTS[(2 if y >= canvas / 2 else 0) + (1 if x >= canvas / 2 else 0)]


def _locate(rng: random.Random, canvas: int) -> Item:
    """The small mark, well inside one quadrant (never near the midlines), among 2-3 large distractor shapes."""
    name = rng.choice(sorted(GLYPHS))
    quadrant = rng.randrange(4)
    first_col, first_row = (8 if quadrant % 2 else 0), (8 if quadrant >= 2 else 0)
    gx, gy = mark_position(rng, canvas, range(first_col + 1, first_col + 7), range(first_row + 1, first_row + 7))
    side = glyph_side(canvas)
    n = rng.randint(2, 3)
    shapes = place_shapes(rng, canvas, [rng.choice(SHAPES) for _ in range(n)], [rng.choice(list(COLORS)) for _ in range(n)],
                     taken=[(gx, gy, glyph_side(canvas))])
    answer = _quadrant(gx + side / 2, gy + side / 2, canvas)
    return Scene(background(rng), shapes, (name, gx, gy)), "Where is the small mark?", answer


def print_position(rng: random.Random, word: str, canvas: int) -> tuple[int, int]:
    """Where a word is printed: on the 16-cell type grid of the canvas (text sits on lines and columns, as in a
    document), anywhere it fits."""
    step = max(1, canvas // 16)
    width, height = text_box(word, canvas)
    cols, rows = (canvas - width) // step, (canvas - height) // step
    return rng.randint(0, cols) * step, rng.randint(0, rows) * step


def printed_scene(rng: random.Random, canvas: int, word: str, fewest: int, most: int) -> Scene:
    """``word`` in small dark print on the type grid, beside ``fewest``..``most`` large distractor shapes."""
    tx, ty = print_position(rng, word, canvas)
    width, height = text_box(word, canvas)
    n = rng.randint(fewest, most)
    kinds, colors = [rng.choice(SHAPES) for _ in range(n)], [rng.choice(list(COLORS)) for _ in range(n)]
    shapes = place_shapes(rng, canvas, kinds, colors, taken=[(tx, ty, max(width, height))])
    return Scene(background(rng), shapes, text=(word, tx, ty))


def _ocr(rng: random.Random, canvas: int) -> Item:
    """One short word in small dark print, beside 1-2 large distractor shapes."""
    word = rng.choice(WORDS)
    return printed_scene(rng, canvas, word, 1, 2), "What word is written in the image?", word


ASPECT_RANGE = (1.0, 4.0)
"""Width/height of ``aspect`` images, drawn log-uniformly: wide enough for pad and dynamic tiles to matter, and a
range (the square of :data:`OVAL_RATIO`) over which squashing maps circles and ovals onto the same apparent
proportions half of the time."""
OVAL_RATIO = 2


def _aspect(rng: random.Random, canvas: int) -> Item:
    """One circle or oval (twice as wide as tall, along the image's long side) on a wide image of height ``canvas``
    and width/height drawn log-uniformly in :data:`ASPECT_RANGE`.

    Squashed to a square (``resize: square``) a shape w/h of r in an image of aspect a looks r/a wide: a circle in an
    image of aspect 1-2 and an oval in one of aspect 2-4 look alike (w/h 0.5-1), so half the items are ambiguous and
    no model that sees squashed pixels beats ~75%. Padding (``pad``) and tiles (``dynamic``) keep proportions, so
    every item is legible to them. Heights are drawn from one range for both classes; only an oval that would not
    fit (an image under 1.3× as wide as tall, never an ambiguous item) is drawn lower."""
    low, high = ASPECT_RANGE
    width = round(canvas * math.exp(rng.uniform(math.log(low), math.log(high))))
    kind = rng.choice(("circle", "oval"))
    margin = max(2, canvas // 32)
    height = rng.randint(canvas * 40 // 100, canvas * 60 // 100)
    if kind == "oval":
        height = min(height, (width - 2 * margin) // OVAL_RATIO)
    span = height * OVAL_RATIO if kind == "oval" else height
    x, y = rng.randint(margin, width - span - margin), rng.randint(margin, canvas - height - margin)
    color = rng.choice(sorted(COLORS))
    shape = Shape(kind, color, x, y, height, width=span if kind == "oval" else None)
    return Scene(background(rng), (shape,), width=width), "Is the shape a circle or an oval?", kind


TASKS: dict[str, Callable[[random.Random, int], Item]] = {
    "count": _count, "color": _color, "exist": _exist, "detail": _detail, "locate": _locate, "ocr": _ocr,
    "grating": _grating_of_period(2), "grating_coarse": _grating_of_period(4), "color_solo": _color_solo,
    "aspect": _aspect, "arrow": _arrow,
}
