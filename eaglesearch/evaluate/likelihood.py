"""Likelihood scoring: pick the answer candidate the model finds most probable (no answer parsing can fail).

For yes/no and multiple-choice benchmarks, each candidate continuation (e.g. "yes" / "no", or the option letters)
is appended to the prompt and scored by the sum of its tokens' log-probabilities under teacher forcing, then the
argmax is the prediction (Prismatic's vlm-evaluation does the same for POPE/AI2D). The image is encoded once per
item and its visual tokens are shared by all of the item's candidates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from eaglesearch.model import EagleModel


@torch.no_grad()
def candidate_logprobs(
    model: EagleModel,
    images: torch.Tensor,
    prompts: Sequence[Sequence[int]],
    candidates: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
) -> list[list[float]]:
    """Sum of log p(candidate tokens | image, prompt) for every candidate of every item.

    ``images`` (B,3,S,S) uint8; ``prompts[i]`` the item's prompt ids (visual tokens expanded, generation prompt
    included); ``candidates[i]`` the token ids of each of its candidate answers (non-empty).
    """
    visual = model.encode_images(images)
    owners, sequences, spans = [], [], []
    for i, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
        for cand in cands:
            if not cand:
                raise ValueError(f"item {i} has an empty answer candidate; every candidate needs a token")
            owners.append(i)
            sequences.append(list(prompt) + list(cand))
            spans.append((len(prompt), len(prompt) + len(cand)))
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
    ids, mask = ids.to(visual.device), mask.to(visual.device)
    embeds = model.embed(None, ids, visual=visual[torch.tensor(owners, device=visual.device)])
    logits = model.lm(inputs_embeds=embeds, attention_mask=mask).logits.float()
    logp = F.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    out: list[list[float]] = [[] for _ in prompts]
    for row, (owner, (start, end)) in enumerate(zip(owners, spans, strict=True)):
        out[owner].append(float(logp[row, start - 1 : end - 1].sum()))
    return out


def pick(scores: Sequence[float]) -> int:
    """Index of the best candidate; the first wins a tie (deterministic)."""
    return max(range(len(scores)), key=lambda i: (scores[i], -i))
