"""Generation speed: batched greedy decoding with a KV cache (``EagleModel.generate_greedy``) against a loop that
re-runs the whole sequence every step without a cache, on the same tiny model and prompts.

Both must produce identical tokens (checked here on every run, and in tests/test_model.py); the number reported is
the ratio of median wall times (no-cache / cache), interleaved in one process so machine noise hits both.

    python benchmarks/eval_speed.py [--items 32] [--new-tokens 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

import eaglesearch  # noqa: F401
from eaglesearch.data import (
    build_eval_items,
    collate_prompts,
    read_llava_json,
    training_corpus,
    write_synthetic,
)
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.model.eagle import EagleModel
from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec, SyntheticDataSpec, TokenizerSpec


@torch.no_grad()
def no_cache_greedy(model: EagleModel, batch: dict[str, torch.Tensor], new_tokens: int) -> list[list[int]]:
    """The baseline: append the argmax token and run the full (left-padded) sequence again, every step."""
    ids, mask = batch["input_ids"], batch["attention_mask"]
    visual = model.encode_images(batch["images"])
    embeds = model.embed(None, ids, visual=visual)
    out: list[list[int]] = [[] for _ in range(ids.shape[0])]
    for _ in range(new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions).logits[:, -1]
        token = logits.argmax(-1)
        for row, t in enumerate(token.tolist()):
            out[row].append(t)
        embeds = torch.cat([embeds, model.lm.get_input_embeddings()(token).unsqueeze(1)], dim=1)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_synthetic(SyntheticDataSpec(tasks=("count", "color"), train_per_task=64,
                                                 eval_per_task=args.items // 2), Path(tmp) / "ds")
        train = read_llava_json(data.train_json, data.image_folder)
        tok = load_tokenizer(TokenizerSpec(vocab_size=400), lambda: training_corpus(train))
        samples = [s for path in data.eval_json.values() for s in read_llava_json(path, data.image_folder)]
        torch.manual_seed(0)
        model = build_eagle(ModelSpec(experts=(ExpertSpec(name="clip"),), grid=8,
                                      lm=LanguageModelSpec(hidden_size=128, num_layers=2, num_heads=4,
                                                           num_kv_heads=2, intermediate_size=344)), tok).eval()
        # Random-init tiny LMs repeat their input; sharper weights make the continuation depend on the context.
        for module in model.lm.model.layers.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.3)
        batch = collate_prompts(build_eval_items(samples, tok, 128, model.num_visual_tokens), tok.pad_token_id)
        cached_t, plain_t = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            cached = model.generate_greedy(batch["images"], batch["input_ids"], batch["attention_mask"],
                                           max_new_tokens=args.new_tokens, eos_token_id=-1)
            cached_t.append(time.perf_counter() - start)
            start = time.perf_counter()
            plain = no_cache_greedy(model, batch, args.new_tokens)
            plain_t.append(time.perf_counter() - start)
            if cached != plain:
                raise SystemExit("KV-cache generation differs from the no-cache loop: this is a bug")
        c, p = statistics.median(cached_t), statistics.median(plain_t)
        print(f"{len(samples)} prompts x {args.new_tokens} new tokens, prompt length {batch['input_ids'].shape[1]}: "
              f"KV cache {c:.3f}s, no cache {p:.3f}s (medians of {args.repeats}); identical outputs; "
              f"speed-up {p / c:.2f}x")


if __name__ == "__main__":
    main()
