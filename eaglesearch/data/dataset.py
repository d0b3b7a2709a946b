"""Torch datasets and collation for training (right padding) and generation (left padding).

A :class:`TrainDataset` is an *index*: each kept sample's record and its token ids (in flat numpy arrays, which
forked loader workers share without copying, unlike lists of Python ints). It never holds decoded images: an
item's image is decoded and resized when the item is read, in a loader worker process
(:mod:`eaglesearch.data.loader`), so memory does not grow with the data set. Images are uint8 (3,S,S) tensors
(every expert resizes and normalises them itself). The image policy (``data/aspect.py``) decides how a picture
becomes square; under ``dynamic`` a sample's image is a (T,3,S,S) stack of tiles and its visual tokens are T times
the model's per-image count.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
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
from eaglesearch.data.llava import DataProblem, Sample
from eaglesearch.data.policy import (
    DECODE_ERRORS,
    DataReport,
    EncodedSample,
    ImageCheck,
    OnProblem,
    escalate,
    missing_image,
    prepare_training_samples,
    problem_policy,
    unreadable_image,
)
from eaglesearch.model.tokenizer import IMAGE_TOKEN

PROBLEMS = "problems"
"""Key of an item that stands in for samples whose image failed to decode (skipped per the policy): the
:class:`DataProblem` of each, for the loader to count in the main process (a worker's own counts would be lost)."""


def load_image(path: ImageRef, size: int, policy: ImagePolicy = SQUARE) -> Tensor:
    """The image at ``path`` (a file, or any :mod:`~eaglesearch.data.image_ref` reference) as RGB uint8
    (3, size, size), resized (bicubic) if needed, or, under a ``dynamic`` policy, its (T, 3, size, size) tiles."""
    return load_with_policy(path, policy, size)


def decode_sample_image(sample: Sample, size: int, policy: ImagePolicy = SQUARE) -> Tensor:
    """The sample's image via :func:`load_image`; a file that is gone or fails to decode raises its
    ``missing_image`` / ``unreadable_image`` :class:`DataProblem`, naming the source record and the sample id."""
    assert sample.image is not None
    try:
        return load_image(sample.image, size, policy)
    except FileNotFoundError:
        raise missing_image(sample) from None
    except DECODE_ERRORS as err:
        raise unreadable_image(sample, err) from None


def _require_image(sample: Sample) -> ImageRef:
    if sample.image is None:
        raise ValueError(f"{sample.name} has no image; every evaluation prompt needs one — remove it from the split")
    return sample.image


class TokenIndex:
    """Token ids and label masks of many samples in three flat arrays (ids, answer mask, offsets): ~5 bytes per
    token instead of ~70 for two lists of Python ints, and nothing a forked worker's reads would copy.

    Filled one sample at a time (:meth:`add`, into compact ``array`` buffers), then :meth:`finish`-ed.
    """

    def __init__(self) -> None:
        self._ids, self._answer, self._lengths = array("i"), array("b"), array("q")
        self.ids = np.zeros(0, dtype=np.int32)
        self.answer = np.zeros(0, dtype=bool)
        self.offsets = np.zeros(1, dtype=np.int64)

    def add(self, ids: Sequence[int], labels: Sequence[int]) -> None:
        self._ids.extend(ids)
        self._answer.extend(label != IGNORE_INDEX for label in labels)
        self._lengths.append(len(ids))

    def finish(self) -> TokenIndex:
        self.ids = np.frombuffer(self._ids, dtype=np.int32).copy()
        self.answer = np.frombuffer(self._answer, dtype=np.int8).astype(bool)
        self.offsets = np.zeros(len(self._lengths) + 1, dtype=np.int64)
        np.cumsum(np.frombuffer(self._lengths, dtype=np.int64), out=self.offsets[1:])
        self._ids, self._answer, self._lengths = array("i"), array("b"), array("q")
        return self

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        ids, labels = self.tensors(index)
        return ids.tolist(), labels.tolist()

    def __iter__(self) -> Iterator[tuple[list[int], list[int]]]:
        return (self[i] for i in range(len(self)))

    def tensors(self, index: int) -> tuple[Tensor, Tensor]:
        """The sample's input ids and labels (-100 except on answers and end markers) as int64 tensors."""
        lo, hi = int(self.offsets[index]), int(self.offsets[index + 1])
        ids = torch.from_numpy(self.ids[lo:hi].astype(np.int64))
        labels = ids.masked_fill(~torch.from_numpy(self.answer[lo:hi]), IGNORE_INDEX)
        return ids, labels


class TrainDataset(Dataset[dict[str, Tensor]]):
    """An index of tokenised conversations; an item's image is decoded when the item is read.

    Up front every sample is encoded and checked (:mod:`eaglesearch.data.policy`): problem samples raise or are
    skipped per ``on_problem``, ``report`` counts what was skipped (log ``report.summary()``), ``samples`` and
    ``encoded`` (ids, labels) hold the kept ones. Images are not opened up front by default (``check_images``:
    the reader already checked that each file exists; a header pass costs ~0.1-1 ms per image, minutes for a
    paper-size mixture on a network file system, and finds nothing the decode below does not).

    Reading item ``i`` decodes its image once, the only decode it gets. A file that fails then is handled by the
    same policy: ``error`` raises its :class:`DataProblem` (source record, sample id, fix); ``skip`` replaces the
    item by the next sample that decodes (``i+1``, ``i+2``, …: the same in every run and every worker, so the batch
    order stays reproducible) and lists the problem under :data:`PROBLEMS` for the loader to count
    (:meth:`note_problem`, once per sample). Text-only samples are a ``text_only`` problem unless
    ``allow_text_only`` (for a model that trains rows without visual tokens, as EagleModel does): they then get a
    blank (zero) image and no image tokens, so a model tells them apart by their image-token count.
    Under a ``dynamic`` image policy (``image_policy``) the token budget is checked for the worst case
    (``image_policy.max_images`` images per sample) and each item's image-token run is sized to its own tile stack.
    """

    def __init__(self, samples: Sequence[Sample], tokenizer: PreTrainedTokenizerBase, image_size: int,
                 num_visual_tokens: int, max_length: int, *, template: TemplateArg = "chatml",
                 on_problem: OnProblem = "error", allow_text_only: bool = False,
                 report: DataReport | None = None, check_images: ImageCheck = "none",
                 image_policy: ImagePolicy = SQUARE) -> None:
        self.image_policy, self.num_visual_tokens = image_policy, num_visual_tokens
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) if image_policy.stacked else None
        self.samples: list[Sample] = []
        self.encoded = TokenIndex()

        def keep(encoded: EncodedSample) -> None:
            self.samples.append(encoded.sample)
            self.encoded.add(encoded.input_ids, encoded.labels)

        _, self.report = prepare_training_samples(
            samples, tokenizer, num_visual_tokens=num_visual_tokens * image_policy.max_images, max_length=max_length,
            template=template, on_problem=on_problem, allow_text_only=allow_text_only, check_images=check_images,
            report=report, keep=keep)
        self.encoded.finish()
        self.image_size = image_size
        self.policy = problem_policy(on_problem)
        self._noted: set[str] = set()

    def image(self, index: int) -> Tensor:
        """Sample ``index``'s image, decoded now (a blank one for a text-only sample); raises its DataProblem."""
        sample = self.samples[index]
        if sample.image is None:
            return blank(self.image_policy, self.image_size)
        return decode_sample_image(sample, self.image_size, self.image_policy)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Tensor | list[DataProblem]]:
        problems: list[DataProblem] = []
        for step in range(len(self)):
            chosen = (index + step) % len(self)
            try:
                image = self.image(chosen)
            except DataProblem as problem:
                if self.policy.action(problem.kind) == "error":
                    raise escalate(problem) from None
                problems.append(problem)
                continue
            ids, labels = self.encoded.tensors(chosen)
            if self.image_token_id is not None:  # encoded for the worst case: fit this sample's tile stack
                fitted = fit_image_tokens(ids.tolist(), labels.tolist(), self.image_token_id,
                                          images_in(image) * self.num_visual_tokens)
                ids, labels = (torch.tensor(v, dtype=torch.long) for v in fitted)
            item: dict[str, Tensor | list[DataProblem]] = {"images": image, "input_ids": ids, "labels": labels}
            if problems:
                item[PROBLEMS] = problems
            return item
        raise ValueError(f"no image of the {len(self)} training samples can be decoded ({self.report.source}; "
                         f"first: {problems[0]}); fix the image files or data.image_folder")

    def note_problem(self, problem: DataProblem) -> None:
        """Count a sample whose image failed to decode (and was replaced) in ``report``, once per sample."""
        if problem.sample_id not in self._noted:
            self._noted.add(problem.sample_id)
            self.report.add(problem)


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
