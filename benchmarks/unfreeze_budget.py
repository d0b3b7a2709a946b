"""Finding 1 through the whole model: does CLIP@128 frozen vs adapted (``expert_lr``) learn the ``arrow`` skill at
all, at the findings recipe's budget and at four times it, on enough images that it cannot memorise them?

``benchmarks/findings.py`` measures finding 1 on 600 arrow images (the tiny world's recipe, 600 SFT steps at batch
16: 16 epochs) and 60 eval items, where both designs scored below the answer prior. This benchmark asks why: it
trains both designs on 4,000 images (2.4 epochs at 600 steps) for 600 and 2,400 steps and evaluates 200 items,
printing each trial's objective with its 95% interval, the answer prior, the last logged training loss, and the
paired unfrozen − frozen delta per budget. A binary answer the model cannot tell apart costs ln 2 per answer token;
averaged over the supervised tokens of ``left<|im_end|>\\n`` that is ln 2 / 3 = 0.231, the floor a model that
learned nothing sits at.

    python benchmarks/unfreeze_budget.py [--steps 600 2400] [--root DIR]

About 25 CPU-minutes on the 2-core box (the 2,400-step trials dominate).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import textwrap
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from common import compare_objective, fmt, load_trial, run_space

from eaglesearch.spec import EvalSpec

ROOT = Path(__file__).resolve().parent.parent
CHANCE = math.log(2) / 3


def space(steps: list[int]) -> str:
    return textwrap.dedent(f"""\
        name: unfreeze-budget
        recipe: {ROOT / "experiments" / "tiny_world.yaml"}
        overrides:
          data: {{max_length: 256, synthetic: {{tasks: [arrow], train_per_task: 4000, eval_per_task: 200}}}}
          train: {{stages: {{sft: {{expert_lr: 1.0e-4}}}}}}
        strategy:
          kind: grid
          factors:
            experts: [[{{name: clip, resolution: 128}}]]
            train.stages.sft.steps: [{", ".join(map(str, steps))}]
            train.stages.sft.trainable.experts: [none, all]
        resources: {{cpus_per_trial: 2, max_concurrent_trials: 1}}
        """)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[600, 2400])
    parser.add_argument("--root", type=Path, help="store, workdir and reports (default: a temp folder); a rerun "
                        "with the same folder is served from the record")
    args = parser.parse_args()
    root = args.root or Path(tempfile.mkdtemp(prefix="unfreeze-budget-"))
    root.mkdir(parents=True, exist_ok=True)
    path = root / "unfreeze_budget.yaml"
    path.write_text(space(args.steps))
    run = run_space(path, root)
    print(f"{len(run.runs)} trials in {run.wall_s / 60:.1f} min; store {root}/mlflow.db\n")
    eval_spec = EvalSpec()
    trials, rows = {}, {}
    for row in run.runs.to_dict("records"):
        key = (int(float(row["param.train.sft.steps"])), row["param.train.sft.trainable.experts"])
        trials[key] = load_trial(run.store, row, "objective", eval_spec, root / "predictions")
        rows[key] = row
    print(f"{'steps':>6} {'experts':>8} {'objective':>22} {'answer prior':>13} {'last train loss':>16}")
    for (steps, experts), row in sorted(rows.items()):
        loss = row.get("train/loss_final", float("nan"))
        print(f"{steps:>6} {experts:>8} {row['objective']:>8.3f} [{row['objective_low']:.3f}, "
              f"{row['objective_high']:.3f}] {row['prior/objective']:>13.3f} {loss:>16.3f}")
    print(f"\nA model that cannot tell left from right has training loss ln 2 / 3 = {CHANCE:.3f}.")
    for steps in args.steps:
        if (steps, "all") in trials and (steps, "none") in trials:
            print(f"{steps} steps: unfrozen - frozen {fmt(compare_objective(trials[steps, 'all'], trials[steps, 'none']))}")


if __name__ == "__main__":
    sys.exit(main())
