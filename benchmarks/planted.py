"""Planted-effect benchmark: does a tiny CPU search recover design choices that must win by construction?

Each planted search space runs on synthetic tasks whose pixels decide the winner (``eaglesearch/data/synthetic.py``
documents the tasks, ``tests/test_planted_data.py`` checks the pixels, ``experiments/tiny_planted.yaml`` is the
recipe). Canvas 128 px; every expert resizes it to its own resolution (bilinear, antialiased):

* ``search_spaces/planted_resolution.yaml`` — clip@32 vs clip@64 vs clip@128 on ``grating`` (period-2 stripes,
  horizontal vs vertical). Only clip@128 sees the stripes; at 64 or 32 px both classes are the same flat grey disc
  (residual < 1 grey level), so those are at chance (50%). **Planted winner clip@128, expected margin ≈ +50 pp.**
* ``search_spaces/planted_tiling.yaml`` — clip@64 interpolated vs clip@64 tiled 2×2 on ``grating``. The tiles crop
  the canvas at native resolution; interpolation halves it. **Planted winner clip@64x2t, expected margin ≈ +50 pp.**
* ``search_spaces/planted_graded.yaml`` — clip@32 vs clip@64 vs clip@128 on ``grating_coarse`` (period-4 stripes,
  random phase), 400 steps: at 64 px half the phases stay legible, at 32 px none. **Planted order clip@128 (≈100%)
  > clip@64 (≤ ~75%) > clip@32 (chance)**, i.e. smaller designed margins than the all-or-nothing spaces.

The objective is the planted task's accuracy alone (``eval.benchmarks``). ``color_solo`` (one large shape in one of
four isoluminant colours, solvable at any resolution; chance 25%) is evaluated in every trial as a **control**: all
designs should be far above chance on it, so a planted margin is specific to the fine-detail task. "Chance" is
printed per task as the share of the most frequent answer among the eval items (what a constant answer scores; the
200 items are not exactly balanced, e.g. 0.585 on grating_coarse with data seed 0).

Each space runs once per seed with the inline executor, one temporary MLflow store and workdir. The seed is the
training seed (model init and batch order: the trial's ``seed``); the synthetic data (``data.synthetic.seed``, hence
the same 200 eval items per task) stays fixed unless ``--vary-data`` is given, in which case the data seed follows
the training seed. For each seed it prints the ranking, whether the planted winner ranked strictly first (a tie is
not a recovery), the margin (winner − best other design on the objective; negative when the winner is not first)
with its 95% interval, and, where the space plants a full order, each consecutive pair's margin. Intervals are the
project's paired percentile bootstrap over eval items (``eaglesearch.evaluate.uncertainty.paired_aggregate`` on the
objective's benchmarks, ``paired_bootstrap`` on one benchmark; 1000 resamples, seed 0, items paired by id from the
trials' persisted predictions) — the same test the reports use to mark tied ranks. The summary gives, per space,
in how many seeds the winner was recovered and in how many its interval excludes 0.

    python benchmarks/planted.py [--seeds 3] [--spaces search_spaces/planted_resolution.yaml ...]
                                 [--vary-data] [--steps N] [--threads N] [--keep DIR] [--check]

About 12 minutes for the three spaces × 3 seeds on the 2-core box (734 s measured with other jobs present;
8 trials per seed, 15–45 s each); more when other jobs compete for the cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml
from common import Trial, compare_objective, compare_task, fmt, load_trial, run_space

from eaglesearch.evaluate.uncertainty import PairedComparison
from eaglesearch.model.validate import load_checked_search
from eaglesearch.spec import EvalSpec
from eaglesearch.spec.load import deep_merge

ROOT = Path(__file__).resolve().parent.parent
CONTROL = "color_solo"


@dataclass(frozen=True)
class Planted:
    winner: str  # trial label of the design that must win
    effect: str  # what the pixels guarantee
    order: tuple[str, ...] = ()  # a full planted order (best first), when the space plants one


PLANTED: dict[str, Planted] = {
    "search_spaces/planted_resolution.yaml": Planted(
        winner="clip@128",
        effect="grating (period-2 stripes) is legible only at the 128 px canvas resolution; clip@64 and clip@32 "
               "see a flat grey disc for both classes (chance 50%); expected margin about +50 pp"),
    "search_spaces/planted_tiling.yaml": Planted(
        winner="clip@64x2t",
        effect="2x2 tiles at 64 px crop the 128 px canvas at native resolution, interpolation to 64 px averages "
               "the period-2 grating away (chance 50%); expected margin about +50 pp"),
    "search_spaces/planted_graded.yaml": Planted(
        winner="clip@128", order=("clip@128", "clip@64", "clip@32"),
        effect="grating_coarse (period-4 stripes): all legible at 128 px, half the phases at 64 px, none at 32 px; "
               "expected about 100% > <=75% > chance"),
}


@dataclass(frozen=True)
class SeedResult:
    seed: int
    ranking: list[Trial]  # best first
    recovered: bool
    runner_up: str
    margin: PairedComparison  # winner - best other design, on the objective
    control: PairedComparison  # the same pair on the control task
    order_ok: bool | None  # the planted full order, when there is one
    order_margins: list[tuple[str, str, PairedComparison]]
    chance: dict[str, float]  # benchmark -> share of the most frequent reference answer
    wall_s: float


# ------------------------------------------------------------------------------------------ running searches


def seeded_space(space: Path, seed: int, out: Path, args: argparse.Namespace) -> Path:
    """A copy of ``space`` under ``out`` whose trials use training seed ``seed`` (and data seed, with
    ``--vary-data``); the recipe path is made absolute so the copy loads from anywhere."""
    data = yaml.safe_load(space.read_text())
    extra: dict[str, object] = {"seed": seed}
    if args.vary_data:
        extra["data"] = {"synthetic": {"seed": seed}}
    if args.steps is not None:
        extra["train"] = {"steps": args.steps}
    data["name"] = f"{data['name']}-seed{seed}"
    data["recipe"] = str(load_checked_search(space).recipe_path)
    data["overrides"] = deep_merge(data.get("overrides") or {}, extra)
    if args.threads is not None:
        data["resources"] = {**(data.get("resources") or {}), "threads_per_trial": args.threads}
    path = out / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_seed(space: Path, planted: Planted, seed: int, root: Path, args: argparse.Namespace) -> SeedResult:
    path = seeded_space(space, seed, root / "spaces", args)
    loaded = load_checked_search(path)
    run = run_space(path, root)
    store, runs, wall = run.store, run.runs, run.wall_s
    objective, mode = loaded.space.strategy.objective, loaded.space.strategy.mode
    eval_spec = EvalSpec.model_validate(loaded.factory.base_dict()["eval"])
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        trials = [load_trial(store, row, objective, eval_spec, Path(tmp)) for row in runs.to_dict("records")]
    sign = 1.0 if mode == "max" else -1.0
    ranking = sorted(trials, key=lambda t: -sign * t.objective)  # stable: ties keep the search's trial order
    by_label = {t.label: t for t in trials}
    if planted.winner not in by_label:
        raise ValueError(f"{space}: the planted winner {planted.winner} is not a trial label "
                         f"({', '.join(by_label)})")
    winner = by_label[planted.winner]
    rival = next(t for t in ranking if t.label != planted.winner)  # the runner-up when the winner is first
    recovered = sign * (winner.objective - rival.objective) > 0
    order_ok, order_margins = None, []
    if planted.order:
        chain = [by_label[label] for label in planted.order]
        order_ok = all(sign * (x.objective - y.objective) > 0 for x, y in pairwise(chain))
        order_margins = [(x.label, y.label, compare_objective(x, y)) for x, y in pairwise(chain)]
    chance = {b: max(Counter(s.item.references for s in items).values()) / len(items)
              for b, items in sorted(winner.items.items())}
    return SeedResult(seed, ranking, recovered, rival.label, compare_objective(winner, rival),
                      compare_task(winner, rival, CONTROL), order_ok, order_margins, chance, wall)


# ------------------------------------------------------------------------------------------------ report


def print_seed(r: SeedResult, planted: Planted, objective_name: str) -> None:
    chance = ", ".join(f"{b} {v:.3f}" for b, v in r.chance.items())
    print(f"  seed {r.seed} ({r.wall_s:.0f}s): ranking by {objective_name} (chance, most frequent answer: {chance}):")
    for rank, t in enumerate(r.ranking, start=1):
        mark = "  <- planted winner" if t.label == planted.winner else ""
        tasks = ", ".join(f"{b} {v:.3f}" for b, v in sorted(t.scores.items()))
        print(f"    {rank}. {t.label:<12} {t.objective:.3f}   ({tasks}){mark}")
    print(f"    winner ranked first: {'yes' if r.recovered else 'NO'}; margin vs {r.runner_up}: {fmt(r.margin)}")
    if r.order_ok is not None:
        print(f"    planted order {' > '.join(planted.order)}: {'recovered' if r.order_ok else 'NOT recovered'}")
        for a, b, c in r.order_margins:
            print(f"      {a} - {b}: {fmt(c)}")
    print(f"    control {CONTROL} (solvable by every design), same pair: {fmt(r.control)}")


def summarize(key: str, planted: Planted, results: Sequence[SeedResult]) -> str:
    n = len(results)
    k = sum(r.recovered for r in results)
    sig = sum(r.recovered and r.margin.low > 0 for r in results)
    margins = [r.margin.delta for r in results]
    text = (f"{planted.winner} recovered in {k}/{n} seeds (95% CI excludes 0 in {sig}/{n}); margin mean "
            f"{statistics.fmean(margins):+.3f}, min {min(margins):+.3f}, max {max(margins):+.3f}")
    if planted.order:
        text += f"; full order recovered in {sum(bool(r.order_ok) for r in results)}/{n}"
    return f"{key}: {text}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--spaces", nargs="+", default=list(PLANTED), help="planted search spaces to run")
    parser.add_argument("--vary-data", action="store_true", help="also set data.synthetic.seed to the seed")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps (quick smoke runs)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per trial (default: the space's)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the MLflow store, workdir and reports here")
    parser.add_argument("--check", action="store_true", help="exit 1 unless every seed recovers every winner")
    args = parser.parse_args()
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    spaces = []
    for name in args.spaces:
        path = Path(name) if Path(name).is_absolute() else ROOT / name
        key = str(path.resolve().relative_to(ROOT)) if path.resolve().is_relative_to(ROOT) else name
        if key not in PLANTED:
            parser.error(f"{name}: no planted winner declared for it; known: {', '.join(PLANTED)}")
        spaces.append((key, path))

    started = time.perf_counter()
    lines, complete = [], True
    with tempfile.TemporaryDirectory(prefix="planted-") as tmp:
        root = (args.keep or Path(tmp)).resolve()
        (root / "spaces").mkdir(parents=True, exist_ok=True)
        for key, path in spaces:
            planted = PLANTED[key]
            loaded = load_checked_search(path)
            benchmarks = loaded.factory.base_dict()["eval"].get("benchmarks")
            objective_name = loaded.space.strategy.objective + (f" (mean score over {', '.join(benchmarks)})"
                                                                if benchmarks else "")
            print(f"\n== {key}: planted winner {planted.winner}\n   {planted.effect}")
            print(f"   training seeds 0..{args.seeds - 1}; data seed "
                  f"{'= training seed' if args.vary_data else 'fixed (the recipe)'}", flush=True)
            results = []
            for seed in range(args.seeds):
                results.append(run_seed(path, planted, seed, root, args))
                print_seed(results[-1], planted, objective_name)
                sys.stdout.flush()
            lines.append(summarize(key, planted, results))
            complete &= all(r.recovered for r in results)
            print(f"  -> {lines[-1].split(': ', 1)[1]}")
    print("\n== summary")
    for line in lines:
        print(f"  {line}")
    print(f"  total wall {time.perf_counter() - started:.0f}s")
    return 1 if args.check and not complete else 0


if __name__ == "__main__":
    sys.exit(main())
