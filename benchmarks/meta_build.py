"""CPU seconds to build a paper space's models on ``meta`` (what ``eaglesearch plan`` and the memory plan do for every
trial), under plain ``torch.device("meta")`` (the baseline: each module's weight initialisation runs through meta
kernels) and under ``eaglesearch.model.meta.skeleton`` (value-only in-place writes skipped), in one process,
alternating, so both see the same machine. Checks that both build identical shapes (parameter names, shapes and
dtypes) before printing a ratio.

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 python benchmarks/meta_build.py [--space search_spaces/paper_fusion.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from eaglesearch.model import build_eagle
from eaglesearch.model.meta import skeleton
from eaglesearch.model.validate import load_checked_search
from eaglesearch.search import planned_trials
from eaglesearch.trial.plan import Vocabulary, architecture_only


def build(spec, vocab: int, context) -> tuple[float, list[tuple[str, tuple[int, ...], torch.dtype]]]:
    start = time.process_time()
    with context():
        model = build_eagle(spec, Vocabulary(vocab), weights=False)
    spent = time.process_time() - start
    return spent, [(n, tuple(p.shape), p.dtype) for n, p in model.named_parameters()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default="search_spaces/paper_fusion.yaml")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials = planned_trials(load_checked_search(Path(args.space)))
    specs = {t.model.model_dump_json(): (architecture_only(t.model).spec, t.model.tokenizer.vocab_size)
             for t in trials}
    plain: list[float] = []
    ours: list[float] = []
    for _ in range(args.repeat):
        for spec, vocab in specs.values():
            base_s, base_shapes = build(spec, vocab, lambda: torch.device("meta"))
            our_s, our_shapes = build(spec, vocab, skeleton)
            assert our_shapes == base_shapes, "skeleton() built different parameters"
            plain.append(base_s)
            ours.append(our_s)
    print(f"{args.space}: {len(specs)} distinct models, {args.repeat} round(s); identical parameter shapes")
    print(f"torch.device('meta'): {sum(plain):.1f} CPU-s in all, median {statistics.median(plain):.2f} s per model")
    print(f"skeleton():           {sum(ours):.1f} CPU-s in all, median {statistics.median(ours):.2f} s per model")
    print(f"ratio skeleton / baseline: {sum(ours) / sum(plain):.2f}")


if __name__ == "__main__":
    main()
