"""Torch datasets and collation for training (right padding) and generation (left padding).

Images are kept as uint8 (3,S,S) tensors — every expert resizes and normalises them itself — which keeps an
in-memory dataset at 3·S² bytes per sample (49 KB at 128 px). The image policy (``data/aspect.py``) decides how a
picture becomes square; under ``dynamic`` a sample's image is a (T,3,S,S) stack of tiles and its visual tokens are
T times the model's per-image count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from eaglesearch.data.aspect import (
    SQUARE,
    ImagePolicy,
    blank,
    fit_image_tokens,
    images_in,
    load_with_policy,
    stack_images,
)
from eaglesearch.data.conversation import (
    IGNORE_INDEX,
    TemplateArg,
    encode_prompt,
    reference_answer,
)
from eaglesearch.data.image_ref import ImageRef
from eaglesearch.data.llava import Sample
from eaglesearch.data.policy import DataReport, OnProblem, prepare_training_samples
from eaglesearch.model.tokenizer import IMAGE_TOKEN


def load_image(path: ImageRef, size: int, policy: ImagePolicy = SQUARE) -> Tensor:
    """The image at ``path`` (a file, or any :mod:`~eaglesearch.data.image_ref` reference) as RGB uint8
    (3, size, size), resized (bicubic) if needed, or, under a ``dynamic`` policy, its (T, 3, size, size) tiles."""
    return load_with_policy(path, policy, size)


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
    Under a ``dynamic`` image ``policy`` the token budget is checked for the worst case (``policy.max_images``
    images per sample) and each item's image-token run is sized to its own tile stack.
    """

    def __init__(self, samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                 num_visual_tokens: int, max_length: int, preload: bool = True, *, template: TemplateArg = "chatml",
                 on_problem: OnProblem = "error", allow_text_only: bool = False,
                 report: DataReport | None = None, policy: ImagePolicy = SQUARE) -> None:
        self.policy, self.num_visual_tokens = policy, num_visual_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) if policy.stacked else None
        encoded, self.report = prepare_training_samples(
            samples, tokenizer, num_visual_tokens=num_visual_tokens * policy.max_images, max_length=max_length,
            template=template,
            on_problem=on_problem, allow_text_only=allow_text_only, report=report)
        self.samples = [e.sample for e in encoded]
        self.encoded = [(e.input_ids, e.labels) for e in encoded]
        self.image_size = image_size
        self.images = [self._image(s) for s in self.samples] if preload else None

    def _image(self, sample: Sample) -> Tensor:
        if sample.image is None:
            return blank(self.policy, self.image_size)
        return load_image(sample.image, self.image_size, self.policy)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids, labels = self.encoded[index]
        image = self.images[index] if self.images is not None else self._image(self.samples[index])
        if self.image_token_id is not None:  # encoded for the worst case: fit this sample's tile stack
            ids, labels = fit_image_tokens(ids, labels, self.image_token_id,
                                           images_in(image) * self.num_visual_tokens)
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
    return {"images": stack_images([item["images"] for item in batch]), "input_ids": ids, "labels": labels,
            "attention_mask": mask}


@dataclass(frozen=True, eq=False)
class EvalBatchItem:
    """One prompt to generate from: the sample id, its image, the prompt ids and the reference answer."""

    id: str
    image: Tensor
    prompt_ids: tuple[int, ...]
    answer: str


def build_eval_items(samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                     num_visual_tokens: int, *, template: TemplateArg = "chatml",
                     policy: ImagePolicy = SQUARE) -> list[EvalBatchItem]:
    """Prompts (all turns but the final answer) and references for generation-based evaluation; each prompt has
    ``num_visual_tokens`` image tokens per image its picture becomes under ``policy``."""
    items = []
    for s in samples:
        image = load_image(_require_image(s), image_size, policy)
        items.append(EvalBatchItem(id=s.id, image=image, answer=reference_answer(s), prompt_ids=tuple(
            encode_prompt(tokenizer, s, images_in(image) * num_visual_tokens, template=template))))
    return items


def collate_prompts(items: Sequence[EvalBatchItem], pad_id: int) -> dict[str, Tensor]:
    """Stack prompts with LEFT padding (what ``EagleModel.generate_greedy`` needs): images, input_ids, mask."""
    width = max(len(item.prompt_ids) for item in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.prompt_ids)
        ids[row, width - n:] = torch.tensor(item.prompt_ids, dtype=torch.long)
        mask[row, width - n:] = 1
    return {"images": stack_images([item.image for item in items]), "input_ids": ids, "attention_mask": mask}
