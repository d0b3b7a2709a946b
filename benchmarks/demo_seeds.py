"""Does the demo's greedy search recover its planted path for other training seeds?

``search_spaces/demo_greedy.yaml`` runs Eagle's greedy round-robin expert selection in the pretrained tiny world;
by construction (``experiments/tiny_world.yaml``, ``eaglesearch/train/pretext_tasks.py``) its best path is
clip → clip+pix2struct, after which no candidate gains significantly (its paired interval above 0) and the search
stops. This script runs the same search once per training seed (model init and batch order; the data and the
pretrained parts stay fixed), with the inline executor into a private store, and prints per seed: the path the
search took, whether it is the planted one, each adopted round's gain over the previous choice with its paired 95%
interval (the project's paired bootstrap over eval items), and the best objective against the answer-prior row. The summary says in how many seeds the path was recovered.

    python benchmarks/demo_seeds.py [--seeds 3] [--keep DIR] [--check]

Each seed is 6 trials (about 4-8 minutes on the 2-core box, more when other jobs compete for the cores).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import yaml
from common import compare_objective, fmt, load_trial, run_space

from eaglesearch.model.validate import load_checked_search
from eaglesearch.report.table import round_table
from eaglesearch.spec import EvalSpec

ROOT = Path(__file__).resolve().parent.parent
SPACE = ROOT / "search_spaces" / "demo_greedy.yaml"
PLANTED = ("clip", "clip+pix2struct")


def experts_of(label: str) -> str:
    """``clip@64+pix2struct@256`` → ``clip+pix2struct``."""
    return "+".join(part.split("@")[0] for part in label.split("+"))


def seeded(seed: int, out: Path) -> Path:
    data = yaml.safe_load(SPACE.read_text())
    data["name"] = f"{data['name']}-seed{seed}"
    data["recipe"] = str(load_checked_search(SPACE).recipe_path)
    data["overrides"] = {**(data.get("overrides") or {}), "seed": seed}
    path = out / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_seed(seed: int, root: Path) -> bool:
    space = seeded(seed, root / "spaces")
    loaded = load_checked_search(space)
    run = run_space(space, root)
    rounds = round_table(run.runs)
    chosen = rounds[rounds["chosen"] == "✓"].sort_values("round")
    path = tuple(experts_of(label) for label in chosen["candidate"])
    eval_spec = EvalSpec.model_validate(loaded.factory.base_dict()["eval"])
    by_key = run.runs.drop_duplicates("key").set_index("key")
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        trials = {key: load_trial(run.store, {**row, "run_id": row["run_id"], "key": key}, "objective", eval_spec,
                                  Path(tmp)) for key, row in by_key.to_dict("index").items()}
    recovered = path == PLANTED
    print(f"  seed {seed} ({run.wall_s:.0f}s): path {' -> '.join(path)}: {'planted' if recovered else 'NOT planted'}")
    keys = list(chosen["key"])
    all_significant = True
    for (rnd, key), previous in zip(zip(chosen["round"], keys, strict=True), [None, *keys], strict=False):
        trial = trials[key]
        scores = ", ".join(f"{b} {v:.2f}" for b, v in sorted(trial.scores.items()))
        line = f"    round {rnd}: {trial.label:<22} objective {trial.objective:.3f} ({scores})"
        if previous is not None:
            gain = compare_objective(trial, trials[previous])
            all_significant &= gain.low > 0
            line += f"\n             gain over {trials[previous].label}: {fmt(gain)}"
        print(line)
    best = max(trials.values(), key=lambda t: t.objective)
    prior = float(by_key["prior/objective"].dropna().iloc[0]) if "prior/objective" in by_key else float("nan")
    print(f"    best {best.label} {best.objective:.3f} vs answer prior {prior:.3f}: {best.objective - prior:+.3f}; "
          f"every adopted gain's interval excludes 0: {'yes' if all_significant else 'no'}", flush=True)
    return recovered


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the MLflow store, workdir and reports here")
    parser.add_argument("--check", action="store_true", help="exit 1 unless at least 2 of 3 seeds recover the path")
    args = parser.parse_args()
    started = time.perf_counter()
    print(f"== {SPACE.relative_to(ROOT)}: planted path {' -> '.join(PLANTED)}; training seeds 0..{args.seeds - 1}")
    with tempfile.TemporaryDirectory(prefix="demo-seeds-") as tmp:
        root = (args.keep or Path(tmp)).resolve()
        (root / "spaces").mkdir(parents=True, exist_ok=True)
        recovered = [run_seed(seed, root) for seed in range(args.seeds)]
    print(f"== planted path recovered in {sum(recovered)}/{len(recovered)} seeds; "
          f"total wall {time.perf_counter() - started:.0f}s")
    return 1 if args.check and sum(recovered) * 3 < 2 * len(recovered) else 0


if __name__ == "__main__":
    sys.exit(main())
