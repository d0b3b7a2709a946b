"""The Eagle paper's four findings, measured in the pretrained tiny world (``experiments/tiny_world.yaml``).

Each finding compares designs that differ in one choice. Every design is trained with training seeds 0..N-1 (model
init and batch order; the data and the pretrained parts stay fixed) and evaluated on the same eval items (60 per
skill: 180 for the world's three, 60 for finding 1's one). A finding's delta is the mean over seeds of the paired
objective difference, its 95% interval the project's paired percentile bootstrap over (seed, item) pairs: seed i of
one design is paired with seed i of the other on the same item (``benchmarks/common.py: pooled``). The per-seed
deltas are printed too, so seed-to-seed spread is visible next to the interval. A verdict says whether the paper's
claim holds here, is contradicted, or is not resolved (interval containing 0), and the note says why it should or
should not hold at this scale.

1. **Unfreezing helps when the input resolution differs from the pretraining resolution** (paper §2.3, Table (b)).
   CLIP was pretrained at 64 px; fed 128 px its position embeddings are resampled. On the opt-in ``arrow`` skill (a
   medium detail no pretext labelled: 1-px strokes at 128 px), delta = unfrozen (``expert_lr`` 1e-4, a tenth of the
   LM's rate) − frozen, both at 128 px.
2. **Channel concatenation is competitive with the other fusions at lower cost** (paper §2.4, Table (c)): for
   clip+sam+pix2struct, channel_concat − each of sequence_append, llava_hr, mini_gemini, deformable, with each
   design's vision GFLOPs per image and visual tokens.
3. **Adding complementary experts helps** (paper §2.6): clip+sam+pix2struct − clip.
4. **Pre-alignment helps a mixture of non-text-aligned experts** (paper §2.5, Table (d)): sam+pix2struct (neither
   was pretrained on text) with Eagle's three stages (``experiments/tiny_eagle_prealign.yaml``), pre-alignment
   enabled − disabled.

    python benchmarks/findings.py [--seeds 3] [--only 1 3] [--keep DIR]

Designs shared by findings run once (trials are content-addressed in one MLflow store). 9 designs × 3 seeds and six
pre-aligned experts: about 45 minutes on the 2-core box, more when other jobs compete for the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import yaml
from common import Trial, compare_objective, fmt, load_trial, pooled, run_space

from eaglesearch.spec import EvalSpec

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "experiments" / "tiny_world.yaml"
PREALIGN = ROOT / "experiments" / "tiny_eagle_prealign.yaml"
MIX = ["clip", "sam", "pix2struct"]
# Sequence append puts every expert's grid in the sequence (3 x 64 visual tokens): every design gets the same
# max_length, so designs shared between findings have one key and run once.
COMMON = {"data": {"max_length": 256}}
# Finding 1 trains and evaluates on the opt-in arrow skill alone (eaglesearch/data/tasks.py: _arrow, 600 training
# images), a medium detail that the frozen pretrained CLIP does not read; unfrozen, the experts train at a tenth of
# the LM's rate (Eagle's vision_tower_lr).
ARROW = {"data": {"synthetic": {"tasks": ["arrow"], "train_per_task": 600}}}
UNFROZEN = {"train": {"stages": {"sft": {"trainable": {"experts": "all"}, "expert_lr": 1.0e-4}}}}


@dataclass(frozen=True)
class Design:
    name: str
    experts: list[Any]
    overrides: dict[str, Any] = field(default_factory=dict)
    recipe: Path = WORLD


@dataclass(frozen=True)
class Finding:
    number: int
    claim: str
    comparisons: list[tuple[str, str]]  # (design a, design b): delta = a - b
    note: str


DESIGNS = {d.name: d for d in (
    Design("arrow clip@128 frozen", [{"name": "clip", "resolution": 128}], ARROW),
    Design("arrow clip@128 unfrozen", [{"name": "clip", "resolution": 128}], ARROW | UNFROZEN),
    Design("clip", ["clip"]),
    *(Design(f"mix {fusion}", MIX, {"model": {"fusion": fusion}})
      for fusion in ("channel_concat", "sequence_append", "llava_hr", "mini_gemini", "deformable")),
    Design("sam+pix2struct prealign", ["sam", "pix2struct"], recipe=PREALIGN),
    Design("sam+pix2struct no prealign", ["sam", "pix2struct"],
           {"train": {"stages": {"prealign": {"enabled": False}}}}, recipe=PREALIGN),
)}

FINDINGS = [
    Finding(1, "unfreezing the encoder helps when the input resolution differs from its pretraining resolution",
            [("arrow clip@128 unfrozen", "arrow clip@128 frozen")],
            "The arrow (left or right, 10 px with 2-px strokes on the 256 px canvas) has 1-px strokes at 128 px, a "
            "resolution CLIP was not pretrained at, and no pretext labelled a mark's direction. A probe on CLIP's "
            "features (benchmarks/unfreeze_probe.py) reads it from adapted features (expert_lr 1e-4) much sooner "
            "than from frozen ones (0.96 vs 0.70 after 300 steps; frozen 0.92 after 1,200): adapting makes the cue "
            "readable. Through the LM, the recipe's 600 SFT steps at batch 16 teach neither design the arrow (both "
            "0.30-0.37 per seed, below the 0.5 prior); whether a longer SFT separates them was not measured."),
    Finding(2, "channel concatenation is competitive with the other fusions at lower cost",
            [("mix channel_concat", f"mix {f}") for f in ("sequence_append", "llava_hr", "mini_gemini", "deformable")],
            "Every fusion sees the same features, but channel concatenation hands the projector one 768-wide "
            "vector per token in which the tiny SAM fills 512 channels and Pix2Struct's 128 have a quarter of "
            "CLIP's spread (per-channel std 0.32 vs 1.38); the other fusions give each expert its own projection "
            "or attention path. The paper's encoders end in normalised features of comparable scale."),
    Finding(3, "adding complementary experts helps",
            [("mix channel_concat", "clip")],
            "SAM resolves the small mark and Pix2Struct reads the print: skills CLIP at 64 px cannot see."),
    Finding(4, "pre-alignment helps a mixture of experts that were not trained with text",
            [("sam+pix2struct prealign", "sam+pix2struct no prealign")],
            "Pre-alignment trains each expert with a projector of its own against the frozen LM before the "
            "projector-only alignment, so the fused features arrive already shaped for the LM."),
]


def design_space(design: Design, seeds: int, out: Path) -> Path:
    slug = design.name.replace(" ", "-").replace("@", "at").replace("+", "-")
    data = {
        "name": f"finding-{slug}",
        "recipe": str(design.recipe),
        "overrides": _merge(COMMON, design.overrides),
        "strategy": {"kind": "grid", "factors": {"experts": [design.experts], "seed": list(range(seeds))}},
        "resources": {"cpus_per_trial": 2, "max_concurrent_trials": 1, "max_failures": 0},
    }
    path = out / f"{slug}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@dataclass
class Measured:
    per_seed: list[Trial]
    pooled: Trial
    vision_gflops: float
    visual_tokens: float
    train_s: float


def measure(design: Design, seeds: int, root: Path) -> Measured:
    space = design_space(design, seeds, root / "spaces")
    run = run_space(space, root)
    runs = run.runs.sort_values("param.seed", key=lambda s: s.astype(int))
    eval_spec = EvalSpec.model_validate(yaml.safe_load(design.recipe.read_text())["eval"])
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        trials = [load_trial(run.store, row, "objective", eval_spec, Path(tmp)) for row in runs.to_dict("records")]
    print(f"  {design.name:<28} objective {statistics.fmean(t.objective for t in trials):.3f} "
          f"(seeds: {', '.join(f'{t.objective:.3f}' for t in trials)}; {run.wall_s:.0f}s)", flush=True)
    return Measured(trials, pooled(trials), float(runs["cost/vision_gflops"].astype(float).mean()),
                    float(runs["cost/visual_tokens"].astype(float).mean()),
                    float(runs["train/wall_s"].astype(float).mean()))


def verdict(low: float, high: float, expect_positive: bool = True) -> str:
    if low > 0:
        return "holds" if expect_positive else "contradicted"
    if high < 0:
        return "contradicted" if expect_positive else "holds"
    return "not resolved (interval contains 0)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3, at least 3)")
    parser.add_argument("--only", type=int, nargs="+", default=None, help="finding numbers to run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the MLflow store, workdir and reports here")
    args = parser.parse_args()
    if args.seeds < 3:
        parser.error("--seeds must be at least 3 (the findings are paired over seeds)")
    findings = [f for f in FINDINGS if args.only is None or f.number in args.only]
    started = time.perf_counter()
    measured: dict[str, Measured] = {}
    lines = []
    with tempfile.TemporaryDirectory(prefix="findings-") as tmp:
        root = (args.keep or Path(tmp)).resolve()
        (root / "spaces").mkdir(parents=True, exist_ok=True)
        for finding in findings:
            print(f"\n== finding {finding.number}: {finding.claim}", flush=True)
            for a, b in finding.comparisons:
                for name in (a, b):
                    if name not in measured:
                        measured[name] = measure(DESIGNS[name], args.seeds, root)
            for a, b in finding.comparisons:
                ma, mb = measured[a], measured[b]
                delta = compare_objective(ma.pooled, mb.pooled)
                seeds = ", ".join(f"{x.objective - y.objective:+.3f}" for x, y in zip(ma.per_seed, mb.per_seed,
                                                                                        strict=True))
                line = f"  {a} - {b}: {fmt(delta)}; per seed {seeds}"
                if finding.number == 2:
                    line += (f"\n      cost: {a} {ma.vision_gflops:.3f} vision GFLOPs/image, "
                             f"{ma.visual_tokens:.0f} visual tokens, {ma.train_s:.0f}s train; {b} "
                             f"{mb.vision_gflops:.3f}, {mb.visual_tokens:.0f}, {mb.train_s:.0f}s")
                    # competitive: not worse beyond the interval's noise
                    ok = delta.high >= 0
                    line += f"\n      verdict: {'competitive' if ok else 'worse'} (delta {delta.delta:+.3f})"
                else:
                    line += f"\n      verdict: {verdict(delta.low, delta.high)}"
                print(line, flush=True)
                lines.append(f"finding {finding.number}: {a} - {b}: {delta.delta:+.3f} "
                             f"[{delta.low:+.3f}, {delta.high:+.3f}]")
            print(f"  why: {finding.note}")
    print("\n== summary")
    for line in lines:
        print(f"  {line}")
    print(f"  total wall {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
