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
5. **Per-expert feature normalisation before channel concatenation** (our ablation, ``model.fusion_norm``): for
   clip+sam+pix2struct with channel_concat, each of layernorm, rmsnorm, standardize − raw features (``none``).
   ``--fusion-norm NAME`` measures finding 2 a second time with every fusion reading NAME-normalised features.

    python benchmarks/findings.py [--seeds 3] [--only 2 5] [--fusion-norm layernorm] [--fusions sequence_append]
                                  [--keep DIR] [--out reports/findings]

One command writes the whole report: ``findings.md`` and ``findings.html`` under ``--out`` (each finding's verdict,
paired 95% interval and per-seed deltas; ``eaglesearch/report/findings.py``) and an MLflow parent run ``findings``
with a child run per finding in the experiment ``findings`` of the run's store (``eaglesearch/tracking/findings.py``).
Designs shared by findings run once (trials are content-addressed in one MLflow store), and a later invocation with
the same ``--keep DIR`` serves every design already measured from the record, so the report regenerates in
seconds. 9 designs × 3 seeds (without finding 5's norms) and six pre-aligned experts: about 45 minutes on the 2-core box,
more when other jobs compete for the cores.
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
from common import Trial, compare_objective, load_trial, pooled, run_space

from eaglesearch.report.findings import (
    Comparison,
    FindingOutcome,
    FindingsRun,
    findings_html,
    findings_markdown,
    verdict,
)
from eaglesearch.spec import EvalSpec
from eaglesearch.tracking.findings import FindingRun, record_findings

ROOT = Path(__file__).resolve().parent.parent
WORLD = ROOT / "experiments" / "tiny_world.yaml"
PREALIGN = ROOT / "experiments" / "tiny_eagle_prealign.yaml"
MIX = ["clip", "sam", "pix2struct"]
FUSIONS = ("channel_concat", "sequence_append", "llava_hr", "mini_gemini", "deformable")
NORMS = ("none", "layernorm", "rmsnorm", "standardize")  # model.fusion_norm (model/fusions/norm.py)
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
    parity: bool = False  # the claim is "a is not worse than b" (a cost claim), not "a beats b"
    variant: str = ""  # the same claim measured under another setting (e.g. "fusion_norm layernorm")


def mix_name(fusion: str, norm: str) -> str:
    """The clip+sam+pix2struct design with ``fusion`` and ``fusion_norm`` (``none``: raw features, unnamed)."""
    return f"mix {fusion}" if norm == "none" else f"mix {fusion} {norm}"


DESIGNS = {d.name: d for d in (
    Design("arrow clip@128 frozen", [{"name": "clip", "resolution": 128}], ARROW),
    Design("arrow clip@128 unfrozen", [{"name": "clip", "resolution": 128}], ARROW | UNFROZEN),
    Design("clip", ["clip"]),
    *(Design(mix_name(fusion, norm), MIX, {"model": {"fusion": fusion, "fusion_norm": norm}})
      for fusion in FUSIONS for norm in NORMS),
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
            "readable. Through the LM, the recipe's 600 SFT steps at batch 16 teach neither design the arrow: on "
            "600 images (16 epochs) both memorise spurious cues and score 0.30-0.37 per seed on the same 60 items, "
            "below the prior; on 4,000 images (benchmarks/unfreeze_budget.py) both sit at the prior after 600 and "
            "2,400 steps (+0.040 [-0.015, +0.095] at 2,400) with training loss ln 2 / 3 throughout, the loss of a "
            "model that cannot tell left from right. A limit of the tiny LM, not a contradiction."),
    Finding(2, "channel concatenation is competitive with the other fusions at lower cost",
            [("mix channel_concat", mix_name(f, "none")) for f in FUSIONS[1:]],
            "Every fusion sees the same features, but channel concatenation hands the projector one 768-wide "
            "vector per token in which the tiny SAM fills 512 channels and Pix2Struct's 128 have a quarter of "
            "CLIP's spread (per-channel std 0.32 vs 1.38); the other fusions give each expert its own projection "
            "or attention path. The paper's encoders end in normalised features of comparable scale.", parity=True),
    Finding(3, "adding complementary experts helps",
            [("mix channel_concat", "clip")],
            "SAM resolves the small mark and Pix2Struct reads the print: skills CLIP at 64 px cannot see."),
    Finding(4, "pre-alignment helps a mixture of experts that were not trained with text",
            [("sam+pix2struct prealign", "sam+pix2struct no prealign")],
            "Pre-alignment trains each expert with a projector of its own against the frozen LM before the "
            "projector-only alignment, so the fused features arrive already shaped for the LM."),
    Finding(5, "per-expert feature normalisation before channel concatenation helps (our ablation, not the paper's)",
            [(mix_name("channel_concat", norm), "mix channel_concat") for norm in NORMS if norm != "none"],
            "Raw, the concatenated vector is dominated by the loudest expert: SAM fills 512 of 768 channels and "
            "Pix2Struct's spread is a quarter of CLIP's, so Pix2Struct is a small part of the projector's input. "
            "Normalising each expert's tokens over its channels (model.fusion_norm) puts the three on one scale "
            "before the concatenation; layernorm and rmsnorm then learn a gain per channel, standardize does not, "
            "and rmsnorm does not remove a token's mean."),
]


def with_fusion_norm(finding: Finding, norm: str, fusions: list[str] | None = None) -> list[Finding]:
    """Finding 2 against ``fusions`` (all four by default), on raw features and, unless ``norm`` is ``none``, again
    with every fusion reading ``norm``-normalised expert features; other findings unchanged."""
    if finding.number != 2:
        return [finding]
    others = fusions or FUSIONS[1:]
    raw = Finding(2, finding.claim, [(mix_name("channel_concat", "none"), mix_name(f, "none")) for f in others],
                  finding.note, parity=True)
    if norm == "none":
        return [raw]
    return [raw, Finding(2, finding.claim, [(mix_name("channel_concat", norm), mix_name(f, norm)) for f in others],
                         f"With fusion_norm {norm} every expert reaches every fusion on one scale, so what is left "
                         "of the gap is the fusions' own design.", parity=True, variant=f"fusion_norm {norm}")]


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


def compare(finding: Finding, a: str, b: str, measured: dict[str, Measured]) -> Comparison:
    """Design ``a`` − design ``b`` for ``finding``: the pooled paired interval, per-seed deltas and the verdict."""
    ma, mb = measured[a], measured[b]
    delta = compare_objective(ma.pooled, mb.pooled)
    detail = ""
    if finding.parity:  # a cost claim: show what each design pays
        detail = (f"cost: {a} {ma.vision_gflops:.3f} vision GFLOPs/image, {ma.visual_tokens:.0f} visual tokens, "
                  f"{ma.train_s:.0f}s train; {b} {mb.vision_gflops:.3f}, {mb.visual_tokens:.0f}, {mb.train_s:.0f}s")
    return Comparison(a=a, b=b, delta=delta.delta, low=delta.low, high=delta.high, p_value=delta.p_value,
                      n_units=delta.n_units, detail=detail, verdict=verdict(delta.low, delta.high, finding.parity),
                      per_seed=tuple(x.objective - y.objective for x, y in zip(ma.per_seed, mb.per_seed, strict=True)))


def finding_run(outcome: FindingOutcome) -> FindingRun:
    """A finding as an MLflow child run: comparison i's names as params, its numbers as metrics."""
    params = {"claim": outcome.claim}
    metrics: dict[str, float] = {}
    for i, c in enumerate(outcome.comparisons, start=1):
        params[f"comparison/{i}"] = c.label
        metrics.update({f"delta/{i}": c.delta, f"low/{i}": c.low, f"high/{i}": c.high, f"p_value/{i}": c.p_value})
    return FindingRun(name=outcome.slug, verdict=outcome.verdict, params=params, metrics=metrics)


def command_line(args: argparse.Namespace) -> str:
    """The command that regenerates this report (the options that change what is measured)."""
    parts = ["python benchmarks/findings.py", f"--seeds {args.seeds}"]
    if args.only:
        parts.append("--only " + " ".join(map(str, args.only)))
    if args.fusion_norm != "none":
        parts.append(f"--fusion-norm {args.fusion_norm}")
    if args.fusions:
        parts.append("--fusions " + " ".join(args.fusions))
    return " ".join(parts) + " --keep DIR"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3, at least 2)")
    parser.add_argument("--fusion-norm", choices=NORMS, default="none",
                        help="measure finding 2 again with this model.fusion_norm for every fusion (default none)")
    parser.add_argument("--fusions", nargs="+", choices=FUSIONS[1:], default=None,
                        help="finding 2 against only these fusions (default: all four)")
    parser.add_argument("--only", type=int, nargs="+", default=None, help="finding numbers to run")
    parser.add_argument("--keep", type=Path, default=None, help="keep the MLflow store, workdir and reports here; "
                        "a later run with the same DIR serves every finished design from the record")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "findings",
                        help="where findings.md and findings.html go (default reports/findings)")
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds must be at least 2 (the findings are paired over seeds)")
    findings = [g for f in FINDINGS if args.only is None or f.number in args.only
                for g in with_fusion_norm(f, args.fusion_norm, args.fusions)]
    started = time.perf_counter()
    measured: dict[str, Measured] = {}
    outcomes: list[FindingOutcome] = []
    with tempfile.TemporaryDirectory(prefix="findings-") as tmp:
        root = (args.keep or Path(tmp)).resolve()
        (root / "spaces").mkdir(parents=True, exist_ok=True)
        for finding in findings:
            variant = f" ({finding.variant})" if finding.variant else ""
            print(f"\n== finding {finding.number}{variant}: {finding.claim}", flush=True)
            for name in dict.fromkeys(n for pair in finding.comparisons for n in pair):
                if name not in measured:
                    measured[name] = measure(DESIGNS[name], args.seeds, root)
            comparisons = tuple(compare(finding, a, b, measured) for a, b in finding.comparisons)
            for c in comparisons:
                print(f"  {c.label}: {c.delta:+.3f} [95% CI {c.low:+.3f}, {c.high:+.3f}] (paired bootstrap over "
                      f"{c.n_units} seed-items, p={c.p_value:.3f}); per seed {', '.join(f'{d:+.3f}' for d in c.per_seed)}"
                      + (f"\n      {c.detail}" if c.detail else "") + f"\n      verdict: {c.verdict}", flush=True)
            print(f"  why: {finding.note}")
            outcomes.append(FindingOutcome(finding.number, finding.claim, finding.note, comparisons, finding.variant))
        first = next(iter(measured.values()))
        run = FindingsRun(command=command_line(args), seeds=args.seeds, objective="objective",
                          items=sum(len(v) for v in first.per_seed[0].items.values()),
                          not_measured=tuple(f"{f.number} ({f.claim})" for f in FINDINGS
                                             if f.number not in {o.number for o in outcomes}))
        texts = {"findings.md": findings_markdown(outcomes, run), "findings.html": findings_html(outcomes, run)}
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (args.out / name).write_text(text)
        parent = record_findings(f"sqlite:///{root}/mlflow.db", "findings", [finding_run(o) for o in outcomes],
                                 {"command": run.command, "seeds": str(args.seeds)}, texts)
    print("\n== summary")
    for o in outcomes:
        print(f"  {o.title.lower()}: {o.verdict}")
        for c in o.comparisons:
            print(f"    {c.label}: {c.delta:+.3f} [{c.low:+.3f}, {c.high:+.3f}]")
    print(f"  wrote {args.out / 'findings.md'}, {args.out / 'findings.html'}; MLflow parent run {parent} "
          f"(experiment 'findings')")
    print(f"  total wall {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
