"""Torch datasets and collation for training (right padding) and generation (left padding).

Images are kept as uint8 (3,S,S) tensors — every expert resizes and normalises them itself — which keeps an
in-memory dataset at 3·S² bytes per sample (49 KB at 128 px).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from eaglesearch.data.conversation import IGNORE_INDEX, encode_for_training, encode_prompt, reference_answer
from eaglesearch.data.llava import Sample


def load_image(path: Path, size: int) -> Tensor:
    """The image at ``path`` as RGB uint8 (3, size, size), resized (bicubic) if needed."""
    with Image.open(path) as image:
        rgb = image.convert("RGB")
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(rgb).copy()).permute(2, 0, 1).contiguous()


def _require_image(sample: Sample) -> Path:
    if sample.image is None:
        raise ValueError(f"sample {sample.id!r} has no image; text-only samples are not supported — remove them "
                         "from the split")
    return sample.image


class TrainDataset(Dataset[dict[str, Tensor]]):
    """Tokenised conversations with their images; every sample is encoded (and length-checked) up front.

    With ``preload`` (default) all images are decoded once into memory; otherwise each item reads its image.
    """

    def __init__(self, samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                 num_visual_tokens: int, max_length: int, preload: bool = True) -> None:
        self.samples = list(samples)
        self.image_size = image_size
        self.paths = [_require_image(s) for s in self.samples]
        self.encoded = [encode_for_training(tokenizer, s, num_visual_tokens, max_length) for s in self.samples]
        self.images = [load_image(p, image_size) for p in self.paths] if preload else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids, labels = self.encoded[index]
        image = self.images[index] if self.images is not None else load_image(self.paths[index], self.image_size)
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
                     num_visual_tokens: int) -> list[EvalBatchItem]:
    """Prompts (all turns but the final answer) and references for generation-based evaluation."""
    return [EvalBatchItem(id=s.id, image=load_image(_require_image(s), image_size),
                          prompt_ids=tuple(encode_prompt(tokenizer, s, num_visual_tokens)),
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
