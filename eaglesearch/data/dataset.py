"""Torch datasets and collation for training (right padding) and generation (left padding).

Images are kept as uint8 (3,S,S) tensors — every expert resizes and normalises them itself — which keeps an
in-memory dataset at 3·S² bytes per sample (49 KB at 128 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from eaglesearch.data.conversation import (
    IGNORE_INDEX,
    TemplateArg,
    encode_prompt,
    reference_answer,
)
from eaglesearch.data.image_ref import ImageRef, open_image
from eaglesearch.data.llava import Sample
from eaglesearch.data.policy import DataReport, OnProblem, prepare_training_samples


def load_image(path: ImageRef, size: int) -> Tensor:
    """The image at ``path`` (a file, or any :mod:`~eaglesearch.data.image_ref` reference) as RGB uint8
    (3, size, size), resized (bicubic) if needed."""
    with open_image(path) as image:
        rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def _require_image(sample: Sample) -> ImageRef:
    if sample.image is None:
        raise ValueError(f"{sample.name} has no image; every evaluation prompt needs one — remove it from the split")
    return sample.image


class TrainDataset(Dataset[dict[str, Tensor]]):
    """Tokenised conversations with their images; every sample is checked and encoded up front.

    Samples with a problem (:mod:`eaglesearch.data.policy`) raise or are skipped per ``on_problem``; ``report``
    counts what was skipped (log ``report.summary()``), ``samples`` and ``encoded`` hold the kept ones. Text-only
    samples are a ``text_only`` problem unless ``allow_text_only`` (for a model that trains rows without visual
    tokens, as EagleModel does): they then get a blank (zero) image and no image tokens, so a model tells
    them apart by their image-token count (0 instead of ``num_visual_tokens``).
    With ``preload`` (default) all images are decoded once into memory; otherwise each item reads its image.
    """

    def __init__(self, samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                 num_visual_tokens: int, max_length: int, preload: bool = True, *, template: TemplateArg = "chatml",
                 on_problem: OnProblem = "error", allow_text_only: bool = False,
                 report: DataReport | None = None) -> None:
        encoded, self.report = prepare_training_samples(
            samples, tokenizer, num_visual_tokens=num_visual_tokens, max_length=max_length, template=template,
            on_problem=on_problem, allow_text_only=allow_text_only, report=report)
        self.samples = [e.sample for e in encoded]
        self.encoded = [(e.input_ids, e.labels) for e in encoded]
        self.image_size = image_size
        self.images = [self._image(s) for s in self.samples] if preload else None

    def _image(self, sample: Sample) -> Tensor:
        if sample.image is None:
            return torch.zeros((3, self.image_size, self.image_size), dtype=torch.uint8)
        return load_image(sample.image, self.image_size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids, labels = self.encoded[index]
        image = self.images[index] if self.images is not None else self._image(self.samples[index])
        return {"images": image, "input_ids": torch.tensor(ids, dtype=torch.long),
                "labels": torch.tensor(labels, dtype=torch.long)}


def collate_train(batch: Sequence[dict[str, Tensor]], pad_id: int) -> dict[str, Tensor]:
    """Stack a training batch with RIGHT padding: ids with ``pad_id``, labels with -100, attention_mask 1/0."""
    width = max(item["input_ids"].shape[0] for item in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = item["input_ids"].shape[0]
        ids[row, :n], labels[row, :n], mask[row, :n] = item["input_ids"], item["labels"], 1
    return {"images": torch.stack([item["images"] for item in batch]), "input_ids": ids, "labels": labels,
            "attention_mask": mask}


@dataclass(frozen=True, eq=False)
class EvalBatchItem:
    """One prompt to generate from: the sample id, its image, the prompt ids and the reference answer."""

    id: str
    image: Tensor
    prompt_ids: tuple[int, ...]
    answer: str


def build_eval_items(samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                     num_visual_tokens: int, *, template: TemplateArg = "chatml") -> list[EvalBatchItem]:
    """Prompts (all turns but the final answer) and references for generation-based evaluation."""
    return [EvalBatchItem(id=s.id, image=load_image(_require_image(s), image_size),
                          prompt_ids=tuple(encode_prompt(tokenizer, s, num_visual_tokens, template=template)),
                          answer=reference_answer(s))
            for s in samples]


def collate_prompts(items: Sequence[EvalBatchItem], pad_id: int) -> dict[str, Tensor]:
    """Stack prompts with LEFT padding (what ``EagleModel.generate_greedy`` needs): images, input_ids, mask."""
    width = max(len(item.prompt_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.prompt_ids)
        ids[row, width - n:] = torch.tensor(item.prompt_ids, dtype=torch.long)
        mask[row, width - n:] = 1
    return {"images": torch.stack([item.image for item in items]), "input_ids": ids, "attention_mask": mask}
