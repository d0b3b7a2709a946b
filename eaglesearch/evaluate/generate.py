"""Score a model on benchmarks by batched greedy generation and exact match; keep every prediction."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from eaglesearch.data import Sample, build_eval_items, collate_prompts
from eaglesearch.evaluate.exact_match import exact_match
from eaglesearch.model import EagleModel


@dataclass(frozen=True)
class Prediction:
    benchmark: str
    id: str
    prompt: str
    prediction: str
    reference: str
    correct: float

    def as_record(self) -> dict[str, object]:
        return {"benchmark": self.benchmark, "id": self.id, "prompt": self.prompt, "prediction": self.prediction,
                "references": [self.reference], "score": self.correct}


@dataclass(frozen=True)
class EvalOutcome:
    scores: dict[str, float]
    predictions: list[Prediction]
    wall_s: float


@torch.inference_mode()
def evaluate(
    model: EagleModel,
    tokenizer,
    benchmarks: Mapping[str, Sequence[Sample]],
    *,
    image_size: int,
    batch_size: int,
    max_new_tokens: int,
) -> EvalOutcome:
    """Greedy-decode every sample's last assistant turn and compare it to the reference by exact match."""
    model.eval()
    start = time.perf_counter()
    scores: dict[str, float] = {}
    predictions: list[Prediction] = []
    pad_id = tokenizer.pad_token_id
    for name, samples in benchmarks.items():
        correct = 0.0
        for i in range(0, len(samples), batch_size):
            chunk = samples[i : i + batch_size]
            items = build_eval_items(chunk, tokenizer, image_size, model.num_visual_tokens)
            batch = collate_prompts(items, pad_id)
            outputs = model.generate_greedy(batch["images"], batch["input_ids"], batch["attention_mask"],
                                            max_new_tokens=max_new_tokens, eos_token_id=tokenizer.eos_token_id)
            for sample, item, ids in zip(chunk, items, outputs, strict=True):
                text = tokenizer.decode(ids, skip_special_tokens=True)
                ref = item.answer
                hit = exact_match(text, ref)
                correct += hit
                prompt = next(t for r, t in sample.turns if r == "user")
                predictions.append(Prediction(name, sample.id, prompt, text, ref, hit))
        scores[name] = correct / len(samples) if samples else 0.0
    return EvalOutcome(scores=scores, predictions=predictions, wall_s=time.perf_counter() - start)
