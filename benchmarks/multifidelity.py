"""What successive halving inside a greedy round saves, and whether it still picks the planted winner.

The search is one greedy round on the planted ``grating`` task (``experiments/tiny_planted.yaml``; the pixels decide
the winner, see ``benchmarks/planted.py``): the base ``sam@32`` cannot see the period-2 stripes, and of the
candidates only ``clip@128`` can (``convnext@32`` and ``dinov2@28`` get the same flat grey disc for both classes),
so the planted winner of the round is ``+clip``. It runs twice, back to back, with the inline executor, a fresh
workspace and MLflow store each (the data and tokenizer are generated once and copied into both):

* **full**: every candidate trains the whole budget (1 + 3 trials);
* **halving** (``strategy.halving: {eta, min_fraction}``): every candidate trains to ``min_fraction`` of the steps,
  the best ``1/eta`` continue from their rung checkpoints to the full budget, and the round is decided on the
  full-budget results.

    python benchmarks/multifidelity.py [--steps 250] [--eta 3] [--min-fraction 0.25]

Prints one JSON object per side and a comparison: trials run, optimizer steps actually trained (the sum of every
trial's ``train/steps_trained``: steps restored from a rung checkpoint are not counted twice), wall seconds of the
whole search, the chosen expert and its full-budget objective (grating accuracy), and whether both picked the same.
Wall time on the shared 2-core box is noisy; the step counts are exact.

Whether the rung ranks candidates as the full budget does, two ways (Spearman's rho, average ranks for ties;
undefined, ``null``, below 3 pairs):

* ``rungs`` (halving side): what the search itself records per rung, over the candidates that reached the full
  budget in that search (its survivors only, so often too few for a value);
* ``spearman_rung_vs_full_side``: each rung's scores against the full side's full-budget scores of the same
  candidates: every candidate has both, which is what a trustworthy rung must get right.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import eaglesearch  # noqa: F401
from eaglesearch.app.run import run_and_report
from eaglesearch.model.validate import load_checked_search
from eaglesearch.search.halving import spearman
from eaglesearch.tracking import TrackingStore
from eaglesearch.trial.data import prepare_data, prepare_tokenizer
from eaglesearch.trial.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
PLANTED_WINNER = "clip"

SPACE = textwrap.dedent("""\
    name: {name}
    recipe: {recipe}
    overrides:
      eval: {{benchmarks: [grating]}}
      train: {{steps: {steps}, checkpoint_every: 0}}
    strategy:
      kind: greedy
      base: [{{name: sam, resolution: 32}}]
      candidates: [{{name: convnext, resolution: 32}}, {{name: clip, resolution: 128}}, {{name: dinov2, resolution: 28}}]
      max_rounds: 1
    {halving}
    resources: {{cpus_per_trial: 2, max_concurrent_trials: 1}}
    """)


def write_space(root: Path, name: str, steps: int, halving: str) -> Path:
    path = root / "spaces" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SPACE.format(name=name, recipe=ROOT / "experiments" / "tiny_planted.yaml", steps=steps,
                                 halving=halving))
    return path


def run_side(root: Path, name: str, space: Path, workdir: Path) -> dict[str, object]:
    loaded = load_checked_search(space)
    uri = f"sqlite:///{root / name}.db"
    started = time.perf_counter()
    outcome, _ = run_and_report(loaded, tracking_uri=uri, workdir=workdir, reports_dir=root / "reports" / name,
                                executor="inline", show_progress=False)
    wall = time.perf_counter() - started
    runs = TrackingStore(uri).trial_runs(outcome.parent_id)
    decision = outcome.decisions[-1]
    roles = runs["role"].value_counts().to_dict()
    budgets = runs["param.budget"] if "param.budget" in runs.columns else None
    scores: dict[str, dict[str, float]] = {}  # added expert -> budget ("1" = full) -> objective
    for i, row in runs.iterrows():
        if isinstance(row["added"], str) and row["objective"] == row["objective"]:  # a scored candidate
            budget = "1" if budgets is None or budgets[i] != budgets[i] else str(float(budgets[i]))
            scores.setdefault(row["added"], {})[budget] = float(row["objective"])
    return {
        "trials": len(runs),
        "trials_by_role": {str(k): int(v) for k, v in roles.items()},
        "steps_trained": float(runs["train/steps_trained"].sum()),
        "wall_s": round(wall, 1),
        "chosen": decision.added,
        "chosen_objective": decision.objective,
        "round_trials": [(label, None if value is None else round(value, 4)) for label, _, value, _ in
                         decision.candidates],
        "rungs": [{"budget": c.budget, "rho": c.rho, "n": c.n} for c in decision.rungs],
        "scores": scores,
    }


def rung_vs_full(halving: dict[str, dict[str, float]], full: dict[str, dict[str, float]]) -> dict[str, object]:
    """Per rung budget of the halving side: Spearman's rho between its scores and the full side's full-budget scores
    of the same candidates."""
    out: dict[str, object] = {}
    rungs = sorted({b for by_budget in halving.values() for b in by_budget if b != "1"}, key=float)
    for budget in rungs:
        pairs = [(halving[e][budget], full[e]["1"]) for e in halving if budget in halving[e] and "1" in full.get(e, {})]
        rho = spearman([a for a, _ in pairs], [b for _, b in pairs])
        out[budget] = {"rho": None if rho is None else round(rho, 3), "n": len(pairs)}
    return out


def warm_workspace(root: Path, space: Path) -> Path:
    """A workspace holding the generated data and the trained tokenizer, copied into each measured run's."""
    loaded = load_checked_search(space)
    trial = loaded.factory.make(loaded.space.strategy.base_experts)
    ws = Workspace.at(root / "warm-ws")
    prepare_tokenizer(trial, prepare_data(trial.data, ws), ws)
    return ws.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=250, help="SFT steps of a full-budget trial")
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-fraction", type=float, default=0.25)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="eaglesearch-mf-") as tmp:
        root = Path(tmp)
        spaces = {
            "full": write_space(root, "mf-full", args.steps, ""),
            "halving": write_space(root, "mf-halving", args.steps,
                                   f"  halving: {{eta: {args.eta}, min_fraction: {args.min_fraction}}}"),
        }
        warm = warm_workspace(root, spaces["full"])
        sides: dict[str, dict[str, object]] = {}
        for side, space in spaces.items():
            workdir = root / f"ws-{side}"
            shutil.copytree(warm, workdir)
            print(f"[{side}] running the greedy round...", file=sys.stderr, flush=True)
            sides[side] = run_side(root, f"mf-{side}", space, workdir)
            print(f"[{side}] {json.dumps(sides[side])}", file=sys.stderr, flush=True)
        full, halving = sides["full"], sides["halving"]
        print(json.dumps({
            "search": "greedy round from sam@32 over {convnext@32, clip@128, dinov2@28} on the planted grating task",
            "steps": args.steps, "eta": args.eta, "min_fraction": args.min_fraction,
            "planted_winner": PLANTED_WINNER,
            "full": full, "halving": halving,
            "steps_ratio_halving_over_full": round(float(halving["steps_trained"]) / float(full["steps_trained"]), 3),
            "wall_ratio_halving_over_full": round(float(halving["wall_s"]) / float(full["wall_s"]), 3),
            "spearman_rung_vs_full_side": rung_vs_full(halving["scores"], full["scores"]),  # type: ignore[arg-type]
            "same_winner": full["chosen"] == halving["chosen"],
            "both_planted": full["chosen"] == halving["chosen"] == PLANTED_WINNER,
        }, indent=1))


if __name__ == "__main__":
    main()
