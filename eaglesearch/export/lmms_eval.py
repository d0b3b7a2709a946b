"""An exported winner under lmms-eval (the harness Eagle evaluates with): a simple model of its ``lmms`` interface.

    python -m lmms_eval --model eaglesearch --model_args pretrained=OUT --tasks textvqa_val --batch_size 8

(``--model eaglesearch`` resolves through the ``lmms_eval.models`` entry point this package declares; from Python,
pass ``EagleSearchLMM(pretrained=OUT)`` to ``lmms_eval.evaluator.simple_evaluate``.) The only module of eaglesearch
that imports lmms_eval; it is an optional extra (``pip install eaglesearch[lmms]``).

Requests are answered as :class:`~eaglesearch.export.winner.Winner` answers: the prompt is the task's text in the
trial's conversation template, the task's first image (an eaglesearch model reads one image per prompt), greedy
decoding (``temperature`` and sampling settings are ignored), cut at the first of the task's ``until`` strings.
``loglikelihood`` scores the continuation after the templated prompt. Multi-round generation is not supported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms

from eaglesearch.export.winner import ImageLike, Winner, load

log = logging.getLogger(__name__)
MODEL_ID = "eaglesearch"


def _allow_filelock_4() -> None:
    """lmms-eval 0.7.3's ``simple_evaluate`` patches ``filelock._api``, a module filelock 4 no longer has (the import
    fails before any task loads). The patch only serves several processes sharing a dataset cache, so with a newer
    filelock it is marked as already applied; with filelock 3 nothing changes."""
    try:
        import filelock._api  # noqa: F401
    except ImportError:
        from lmms_eval import evaluator

        evaluator._enable_reentrant_filelocks._patched = True  # type: ignore[attr-defined]


def cut_at_stops(text: str, until: Sequence[str] | str | None) -> str:
    """``text`` up to the first of the stop strings (lmms-eval's ``until``)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    for stop in stops:
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


class EagleSearchLMM(lmms):
    """lmms-eval's view of an eaglesearch model folder (``pretrained``: the folder ``eaglesearch export`` wrote)."""

    is_simple = True

    def __init__(self, pretrained: str, device: str | None = None, batch_size: int | str | None = 1,
                 max_batch_size: int | None = None, max_new_tokens: int | str | None = None, **unknown: Any) -> None:
        super().__init__()
        if unknown:
            raise TypeError(f"eaglesearch model_args take pretrained, device, batch_size, max_new_tokens; unknown: "
                            f"{', '.join(sorted(unknown))}")
        _allow_filelock_4()
        self.winner: Winner = load(pretrained, device)
        self.batch_size_per_gpu = int(batch_size) if batch_size not in (None, "auto") else 1
        self.max_new_tokens = int(max_new_tokens) if max_new_tokens else None

    def _visual(self, doc_to_visual: Any, doc_id: int, task: str, split: str) -> ImageLike:
        visuals = doc_to_visual(self.task_dict[task][split][doc_id]) if doc_to_visual is not None else None
        if visuals is None:
            return None
        visuals = list(visuals) if isinstance(visuals, (list, tuple)) else [visuals]
        if len(visuals) > 1:
            log.warning("%s doc %s has %d images; an eaglesearch model reads the first", task, doc_id, len(visuals))
        return visuals[0] if visuals else None

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Greedy answers, batched ``batch_size`` at a time among requests with the same token budget."""
        answers: list[str] = [""] * len(requests)
        pending: dict[int, list[tuple[int, ImageLike, str, Any]]] = {}
        for index, request in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            kwargs = dict(gen_kwargs or {})
            budget = int(kwargs.get("max_new_tokens") or self.max_new_tokens or self.winner.trial.eval.max_new_tokens)
            image = self._visual(doc_to_visual, doc_id, task, split)
            pending.setdefault(budget, []).append((index, image, str(context), kwargs.get("until")))
        for budget, group in pending.items():
            for start in range(0, len(group), self.batch_size_per_gpu):
                chunk = group[start:start + self.batch_size_per_gpu]
                texts = self.winner.generate([c[1] for c in chunk], [c[2] for c in chunk], max_new_tokens=budget,
                                             batch_size=len(chunk))
                for (index, _, _, until), text in zip(chunk, texts, strict=True):
                    answers[index] = cut_at_stops(text, until)
        return answers

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        """log p(target | image, templated context) and whether greedy decoding yields the target."""
        out = []
        for request in requests:
            context, doc_to_target, doc_to_visual, doc_id, task, split = request.args
            doc = self.task_dict[task][split][doc_id]
            target = doc_to_target(doc) if callable(doc_to_target) else doc_to_target
            image = self._visual(doc_to_visual, doc_id, task, split)
            out.append(self.winner.loglikelihood(image, str(context), str(target)))
        return out

    def generate_until_multi_round(self, requests: list[Instance]) -> list[str]:
        raise NotImplementedError("eaglesearch models answer single-round prompts; use a task with output_type "
                                  "generate_until")


def manifest() -> Any:
    """The ``lmms_eval.models`` entry point: ``--model eaglesearch`` → :class:`EagleSearchLMM`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, simple_class_path=f"{__name__}.EagleSearchLMM")
