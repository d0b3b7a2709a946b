"""A kept model, loaded for use: ``generate(images, prompts)`` answers as the trial's own evaluation did.

The prompt is built as evaluation builds it (the trial's conversation template, ``<image>`` expanded to the model's
visual tokens, the template's generation prompt), images are prepared as evaluation prepares them (RGB, then the
trial's image policy: squashed or padded to its square canvas, or cut into dynamic tiles), decoding is the same greedy loop with the trial's ``max_new_tokens``. So an
exported winner given a benchmark item's image and prompt returns the prediction its trial recorded.
"""

from __future__ import annotations

import base64
import contextlib
import io
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch.nn import functional as F

from eaglesearch.data import Sample, collate_prompts, encode_prompt, load_image
from eaglesearch.data.aspect import SQUARE, ImagePolicy, apply_policy, blank, images_in, stack_images
from eaglesearch.data.dataset import EvalBatchItem
from eaglesearch.model.experts.base import PAD_FILL
from eaglesearch.model.saved import SavedModel, load_model_folder

ImageLike = Image.Image | str | Path | bytes | None
# The path a prompt names when its image came in memory (a PIL image, bytes): only its presence matters.
_IN_MEMORY = Path("<image>")


def _decode_data_url(text: str) -> Image.Image:
    """``data:image/png;base64,...`` (what a REST client sends a served model) → the image."""
    _, _, payload = text.partition(",")
    return Image.open(io.BytesIO(base64.b64decode(payload)))


def prepare_image(image: ImageLike, size: int, policy: ImagePolicy = SQUARE) -> torch.Tensor:
    """An image (PIL, path, ``data:`` URL or encoded bytes) as evaluation feeds it under the trial's image
    ``policy``: uint8 (3, size, size), or a (T, 3, size, size) tile stack under ``dynamic``. None is a text-only
    prompt (a blank image no visual token reads)."""
    if image is None:
        return blank(policy, size)
    if isinstance(image, (str, Path)) and not str(image).startswith("data:"):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"image {path} does not exist")
        return load_image(path, size, policy)
    if isinstance(image, str):
        image = _decode_data_url(image)
    elif isinstance(image, bytes):
        image = Image.open(io.BytesIO(image))
    return apply_policy(image, policy, size)


class Winner:
    """An exported eaglesearch model (``load(folder)``): an Eagle model, its tokenizer and the trial it came from."""

    def __init__(self, saved: SavedModel) -> None:
        self.model = saved.model
        self.tokenizer = saved.tokenizer
        self.trial = saved.trial
        self.manifest = saved.manifest
        self.device = next(self.model.parameters()).device
        self.policy = ImagePolicy.from_spec(self.trial.data.image, PAD_FILL)  # as the trial trained and evaluated

    def __repr__(self) -> str:
        return f"Winner({self.trial.label}, key={self.trial.key[:12]}, device={self.device})"

    @property
    def image_size(self) -> int:
        return self.trial.data.image_size

    def _prompt_ids(self, prompt: str, has_image: bool, images: int = 1) -> list[int]:
        """The prompt as evaluation encodes it: ``num_visual_tokens`` image tokens per square image of its stack."""
        sample = Sample(id="prompt", image=_IN_MEMORY if has_image else None, turns=(("user", prompt),))
        return encode_prompt(self.tokenizer, sample, images * self.model.num_visual_tokens,
                             template=self.trial.data.template)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA, as the trial evaluated; nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def generate(self, images: Sequence[ImageLike], prompts: Sequence[str], *, max_new_tokens: int | None = None,
                 batch_size: int | None = None) -> list[str]:
        """One greedy answer per (image, prompt). Images: PIL images, paths, ``data:`` URLs, encoded bytes or None
        (text only). ``max_new_tokens`` and ``batch_size`` default to the trial's evaluation settings."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts; give one image (or None) per "
                             "prompt")
        limit = max_new_tokens or self.trial.eval.max_new_tokens
        step = batch_size or self.trial.eval.batch_size
        answers: list[str] = []
        for start in range(0, len(prompts), step):
            chunk = list(zip(images[start:start + step], prompts[start:start + step], strict=True))
            pictures = [prepare_image(img, self.image_size, self.policy) for img, _ in chunk]
            stacked = stack_images(pictures)  # tile stacks padded to the chunk's largest, as evaluation batches them
            items = [EvalBatchItem(str(i), stacked[i], tuple(self._prompt_ids(p, img is not None, images_in(pic))), "")
                     for i, ((img, p), pic) in enumerate(zip(chunk, pictures, strict=True))]
            batch = collate_prompts(items, self.tokenizer.pad_token_id)
            with self._autocast():
                out = self.model.generate_greedy(batch["images"].to(self.device), batch["input_ids"].to(self.device),
                                                 batch["attention_mask"].to(self.device), max_new_tokens=limit,
                                                 eos_token_id=self.tokenizer.eos_token_id)
            answers += [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in out]
        return answers

    @torch.inference_mode()
    def loglikelihood(self, image: ImageLike, prompt: str, continuation: str) -> tuple[float, bool]:
        """log p(``continuation`` | image, prompt) under teacher forcing, and whether greedy decoding would produce
        exactly those tokens (what lmms-eval's ``loglikelihood`` asks)."""
        picture = prepare_image(image, self.image_size, self.policy)
        prompt_ids = self._prompt_ids(prompt, image is not None, images_in(picture))
        target = self.tokenizer(continuation, add_special_tokens=False)["input_ids"]
        if not target:
            raise ValueError(f"the continuation {continuation!r} has no tokens; give a non-empty answer")
        ids = torch.tensor([prompt_ids + target], device=self.device)
        pixels = picture.unsqueeze(0).to(self.device)
        with self._autocast():
            embeds = self.model.embed(pixels, ids)  # a text-only prompt has no image token: its blank is unread
            logits = self.model.lm(inputs_embeds=embeds, attention_mask=torch.ones_like(ids)).logits.float()
        scored = logits[0, len(prompt_ids) - 1:-1]
        wanted = torch.tensor(target, device=self.device)
        logp = F.log_softmax(scored, dim=-1).gather(-1, wanted.unsqueeze(-1)).sum()
        return float(logp), bool((scored.argmax(-1) == wanted).all())


def load(folder: str | Path, device: str | torch.device | None = None) -> Winner:
    """The model in an exported folder (``eaglesearch export``), on ``device`` (default: CUDA when available)."""
    chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return Winner(load_model_folder(folder, chosen))
