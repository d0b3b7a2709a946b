"""The Eagle model: experts → fusion (on the common token grid) → projector → causal LM.

Images enter as uint8 (B,3,S,S); every expert resizes and normalises them itself, and the fusion decides how the
experts are run and combined (reference/eagle.md §2); when it already maps to the LM width the projector is the
identity. The text side arrives already
tokenised, with the ``<image>`` placeholder expanded to exactly ``num_visual_tokens`` image-token ids per sample
(``eaglesearch.data.conversation`` does that); their embeddings are replaced by the projected visual tokens.

Under the ``dynamic`` image policy (``eaglesearch/data/aspect.py``) a sample's picture is a stack of T square
images (tiles, then a thumbnail): images arrive as (B,T_max,3,S,S), padded with zero images, and a sample with T
real images carries T·``num_visual_tokens`` image tokens. The model reads T from that count, encodes only the real
images (all of the batch's at once) and fills each sample's image tokens with its images' tokens in order.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import cast

import torch
from torch import Tensor, nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from eaglesearch.model.experts.base import VisionExpert
from eaglesearch.model.fusions import Fusion


class EagleModel(nn.Module):
    """A mixture-of-vision-experts multimodal LM (experts in spec order; channel-concat fusion in Eagle).

    The fusion gets the experts at every call and never owns them, so each parameter belongs to one part.
    """

    def __init__(
        self,
        experts: Mapping[str, VisionExpert],
        fusion: Fusion,
        projector: nn.Module,
        lm: PreTrainedModel,
        image_token_id: int,
        grid: int,
    ) -> None:
        super().__init__()
        if not experts:
            raise ValueError("an Eagle model needs at least one vision expert")
        self.experts = nn.ModuleDict(dict(experts))
        self.fusion = fusion
        self.projector = projector
        self.lm = lm
        self.image_token_id = image_token_id
        self.grid = grid

    @property
    def num_visual_tokens(self) -> int:
        """Visual tokens per image: grid², or more for sequence_append and tiled experts (the fusion's count)."""
        return self.fusion.num_tokens

    def cache_expert_features(self, megabytes: int, folder: Path | None = None) -> None:
        """Give every expert a share of ``megabytes`` for the maps it computes while fully frozen, so each image
        is encoded once (``model/experts/feature_cache.py``), starting from the maps saved in ``folder`` for its
        current weights (:meth:`save_expert_features`); 0 leaves the experts uncached."""
        if megabytes <= 0:
            return
        share = megabytes * 2**20 // len(self.experts)
        for expert in self.experts.values():
            vision = cast(VisionExpert, expert)
            cache = vision.attach_feature_cache(share)
            if folder is not None:
                cache.load(folder, vision)

    def save_expert_features(self, folder: Path) -> None:
        """Save each cached expert's maps in ``folder``, named by the expert's weights, for later trials."""
        for expert in self.experts.values():
            vision = cast(VisionExpert, expert)
            if vision.feature_cache is not None:
                vision.feature_cache.save(folder, vision)

    def encode_images(self, images: Tensor) -> Tensor:
        """uint8 images (B,3,S,S) → visual tokens (B, num_visual_tokens, d_lm); image stacks (B,T,3,S,S) →
        (B, T·num_visual_tokens, d_lm), every image of the stack encoded (padding included)."""
        if images.dim() == 5:
            flat = self.encode_images(images.flatten(0, 1))
            return flat.reshape(images.shape[0], images.shape[1] * flat.shape[1], flat.shape[-1])
        experts = [cast(VisionExpert, e) for e in self.experts.values()]
        return self.projector(self.fusion(experts, images, self.grid))

    def _images_per_row(self, counts: Tensor, images: Tensor | None, visual: Tensor | None) -> Tensor:
        """How many square images each row's image-token count stands for (0 for text-only rows); ``ValueError``
        for a count that is not a whole number of images within the row's image slot."""
        per = self.num_visual_tokens
        most = 1
        if visual is not None:
            most = visual.shape[1] // per
        elif images is not None and images.dim() == 5:
            most = images.shape[1]
        wrong = ((counts % per != 0) | (counts > most * per)).nonzero().flatten().tolist()
        if wrong:
            i = wrong[0]
            slot = f"{per} visual tokens per image" + (f", up to {most} images per sample" if most > 1 else "")
            raise ValueError(f"sample {i} of the batch has {int(counts[i])} image tokens but the model makes "
                             f"{slot} (grid {self.grid}, fusion {type(self.fusion).__name__}); expand the "
                             "<image> placeholder with eaglesearch.data.conversation (num_visual_tokens="
                             f"{per} times the sample's images: its tiles under the dynamic image policy)")
        return counts // per

    def embed(self, images: Tensor | None, input_ids: Tensor, visual: Tensor | None = None,
              host_ids: Tensor | None = None) -> Tensor:
        """Text embeddings with every image-token position replaced by the sample's visual tokens, in order.

        A row holds either exactly ``num_visual_tokens`` image tokens (an image sample) or none (a text-only
        sample, whose image slot is ignored and never encoded); with image stacks (B,T,3,S,S), T_i times that for
        a sample of T_i images. ``visual`` (B, N, d_lm), when given, is used instead of encoding ``images`` (so
        several sequences can share one image's tokens, as in likelihood scoring of answer candidates); a row
        takes its first (image-token count) of them. ``host_ids``: the same ids on the CPU (the batch before it was
        copied to the GPU); the checks and the choice of rows and images to encode read it, so a training step on the
        GPU never waits for the device to answer them.
        """
        rows = visual.shape[0] if visual is not None else (images.shape[0] if images is not None else -1)
        if rows != input_ids.shape[0]:
            raise ValueError(f"got {rows} images for {input_ids.shape[0]} token sequences; "
                             "every sample needs an image slot (text-only samples carry a blank one)")
        probe = host_ids if host_ids is not None else input_ids
        counts = (probe == self.image_token_id).sum(dim=1)
        per_row = self._images_per_row(counts, images, visual)
        embeds = self.lm.get_input_embeddings()(input_ids)
        with_image = counts > 0
        if not bool(with_image.any()):
            return embeds
        is_image = input_ids == self.image_token_id
        if visual is None:
            assert images is not None
            if images.dim() == 5:  # image stacks: encode the real images only, in row order
                real = torch.arange(images.shape[1], device=per_row.device) < per_row.unsqueeze(1)
                flat = self.encode_images(images[real.to(images.device)])
                return embeds.masked_scatter(is_image.unsqueeze(-1), flat.to(embeds.dtype).reshape(-1, flat.shape[-1]))
            visual = self.encode_images(images if bool(with_image.all()) else images[with_image.to(images.device)])
        else:
            visual = visual[with_image.to(visual.device)] if not bool(with_image.all()) else visual
            used = counts[with_image]
            if bool((used != visual.shape[1]).any()):  # rows with fewer images than the widest: their own tokens
                visual = torch.cat([v[: int(n)] for v, n in zip(visual, used.tolist(), strict=True)])
        visual = visual.to(embeds.dtype)
        return embeds.masked_scatter(is_image.unsqueeze(-1), visual.reshape(-1, visual.shape[-1]))

    def forward(
        self,
        images: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
        host_ids: Tensor | None = None,
    ) -> CausalLMOutputWithPast:
        """The LM output for the multimodal sequence; ``.loss`` is set when ``labels`` (-100 = ignored) are given.
        ``host_ids``: ``input_ids`` on the CPU, when they are on the GPU (see :meth:`embed`)."""
        embeds = self.embed(images, input_ids, host_ids=host_ids)
        return self.lm(inputs_embeds=embeds, attention_mask=attention_mask, labels=labels)

    @torch.no_grad()
    def generate_greedy(
        self,
        images: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        max_new_tokens: int,
        eos_token_id: int,
    ) -> list[list[int]]:
        """Greedy decoding with a KV cache for LEFT-padded prompts; per row, the ids before ``eos`` (excluded).

        Positions are counted over real tokens only (``cumsum(mask) - 1``), so a prompt decodes the same alone
        and inside a padded batch. Call ``model.eval()`` first if any module has dropout.
        """
        if max_new_tokens <= 0:
            raise ValueError(f"max_new_tokens must be positive; got {max_new_tokens}")
        if bool((attention_mask[:, -1] == 0).any()):
            raise ValueError("generate_greedy needs LEFT-padded prompts (the last position of every row must be a "
                             "real token); collate prompts with eaglesearch.data.dataset.collate_prompts")
        mask = attention_mask.to(torch.long)
        positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)
        cache_name = _cache_argument(self.lm)
        out = self.lm(inputs_embeds=self.embed(images, input_ids), attention_mask=mask, position_ids=positions,
                      use_cache=True, logits_to_keep=1)
        next_position = positions[:, -1:] + 1
        batch = input_ids.shape[0]
        generated: list[list[int]] = [[] for _ in range(batch)]
        done = [False] * batch
        for step in range(max_new_tokens):
            tokens = out.logits[:, -1].argmax(dim=-1)
            for row, token in enumerate(tokens.tolist()):
                if done[row]:
                    continue
                if token == eos_token_id:
                    done[row] = True
                else:
                    generated[row].append(token)
            if all(done) or step == max_new_tokens - 1:
                break
            mask = torch.cat([mask, mask.new_ones(batch, 1)], dim=1)
            out = self.lm(input_ids=tokens.unsqueeze(1), attention_mask=mask, position_ids=next_position,
                          use_cache=True, **{cache_name: getattr(out, cache_name)})
            next_position = next_position + 1
        return generated

    def param_counts(self) -> dict[str, int]:
        """Parameter counts: ``total``, ``trainable``, ``expert/<name>`` per expert, ``fusion`` (adapters, attention,
        per-expert projectors of sequence_append), ``projector``, ``lm``; the parts add up to ``total``."""
        counts = {"total": _count(self), "trainable": _count(self, trainable_only=True)}
        for name, expert in self.experts.items():
            counts[f"expert/{name}"] = _count(expert)
        counts["fusion"] = _count(self.fusion)
        counts["projector"] = _count(self.projector)
        counts["lm"] = _count(self.lm)
        return counts


def _cache_argument(lm: nn.Module) -> str:
    """The LM's name for the KV cache, in its forward arguments and outputs (transformers 5.x: ``cache``)."""
    return "cache" if "cache" in inspect.signature(lm.forward).parameters else "past_key_values"


def _count(module: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of ``module`` (shared/tied tensors counted once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
