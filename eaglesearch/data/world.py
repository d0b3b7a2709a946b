"""The tiny world's text: what the pretrained tiny LM reads before it ever sees an image.

The synthetic tasks (``tasks.py``) draw scenes and ask questions about them; :func:`describe` turns a scene into
its caption. Here the same scenes become *text-only* conversations — ``"<caption>\\n<question>"`` answered with the
task's answer — so a language model pretrained on them knows the world's vocabulary and its answer format, and
has learned to read an answer from its context, the way Vicuna knows language before LLaVA shows it an image.
At SFT time the caption is replaced by the image's visual tokens: a model answers well once its projector puts
into the LM's context what the caption said.

:func:`world_corpus` is the fixed text the world's tokenizer is trained on (``tokenizer: {kind: world}``): every
task's questions and answers in ChatML with and without an image placeholder, and plain captions, from scenes
drawn with their own seed (never the benchmark's), so the tokenizer is the same for every dataset of the world.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from eaglesearch.data.llava import Sample
from eaglesearch.data.scene import describe
from eaglesearch.data.tasks import TASKS
from eaglesearch.model.tokenizer import IMAGE_TOKEN, render_chatml

WORLD_TASKS = ("count", "color", "exist", "detail", "locate", "ocr")
"""The tasks of the tiny world's benchmark (the planted grating / color_solo tasks are not part of it)."""
WORLD_CANVAS = 256


def world_scenes(seed: str, canvas: int = WORLD_CANVAS, tasks: tuple[str, ...] = WORLD_TASKS
                 ) -> Iterator[tuple[str, object, str, str]]:
    """An endless, seeded stream of ``(task, scene, question, answer)``, tasks in round-robin order."""
    rng = random.Random(f"eaglesearch.world/{seed}")
    while True:
        for task in tasks:
            scene, question, answer = TASKS[task](rng, canvas)
            yield task, scene, question, answer


def text_samples(count: int, seed: str, canvas: int = WORLD_CANVAS) -> list[Sample]:
    """``count`` text-only conversations: the caption and the question in the user turn, the answer after it."""
    out = []
    for i, (task, scene, question, answer) in zip(range(count), world_scenes(seed, canvas), strict=False):
        out.append(Sample(id=f"world-{task}-{i}", image=None,
                          turns=(("user", f"{describe(scene, canvas)}\n{question}"), ("assistant", answer))))
    return out


def world_corpus(scenes: int = 1200, canvas: int = WORLD_CANVAS) -> list[str]:
    """The tokenizer corpus: per scene, the question as the LM reads it (after a caption), as a multimodal model
    reads it (after ``<image>``), and the plain caption line LLaVA's alignment stage trains on."""
    corpus = []
    for _, (_task, scene, question, answer) in zip(range(scenes), world_scenes("tokenizer", canvas), strict=False):
        caption = describe(scene, canvas)
        corpus.append(render_chatml([("user", f"{caption}\n{question}"), ("assistant", answer)]))
        corpus.append(render_chatml([("user", f"{IMAGE_TOKEN}\n{question}"), ("assistant", answer)]))
        corpus.append(f"{IMAGE_TOKEN}{caption}\n")
    return corpus
