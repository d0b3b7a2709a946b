"""What stage-artifact reuse saves: wall time of a greedy expert search with Eagle's pre-alignment, with and without
reuse, measured back to back in one process.

The search is greedy round-robin from CLIP over {ConvNeXt, SAM}, two rounds (4 trials), on a three-stage recipe
(per-expert pre-alignment, projector alignment on captions, SFT). With reuse, every expert's pre-alignment is
trained once (3 stage trainings); without (``--artifacts per-trial``: each trial a private artifact store), every
trial pre-aligns each of its experts again (1 + 2 + 2 + 3 = 8 stage trainings). Both runs use the inline executor,
a fresh workspace and MLflow store each, and the same recipe; the data and tokenizer are generated once first and
copied into both workspaces, so neither side pays for them. Order alternates over ``--repeats`` to spread machine drift.

    python benchmarks/stages.py [--prealign-steps 60] [--sft-steps 60] [--repeats 1]

Prints one JSON object: wall seconds per side (median), the ratio without/with, and the stage counts read back from
MLflow (trained vs reused) so the saving can be checked against what actually ran.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import eaglesearch  # noqa: F401
from eaglesearch.app.run import run_and_report
from eaglesearch.model.validate import load_checked_search
from eaglesearch.tracking import TrackingStore
from eaglesearch.trial.data import prepare_data, prepare_tokenizer
from eaglesearch.trial.workspace import PER_TRIAL, Workspace


def recipe(prealign_steps: int, sft_steps: int) -> str:
    return textwrap.dedent(f"""\
        name: bench-stages
        scale: tiny
        model:
          grid: 4
          lm: {{hidden_size: 64, num_layers: 2, num_heads: 4, num_kv_heads: 2, intermediate_size: 172}}
          tokenizer: {{vocab_size: 300}}
        data:
          image_size: 64
          max_length: 160
          synthetic: {{tasks: [count, color], train_per_task: 48, eval_per_task: 8, image_size: 64}}
        train:
          stages:
            - {{name: prealign, per_expert: true, trainable: {{experts: all, projector: true, lm: none}},
               steps: {prealign_steps}, batch_size: 8, lr: 1.0e-3}}
            - {{name: align, data: caption, template: plain,
               trainable: {{experts: none, projector: true, lm: none}}, steps: {max(1, sft_steps // 3)},
               batch_size: 8, lr: 1.0e-3}}
            - {{name: sft, steps: {sft_steps}, batch_size: 8, lr: 5.0e-4}}
        eval: {{batch_size: 16, max_new_tokens: 2}}
        """)


SPACE = textwrap.dedent("""\
    name: {name}
    recipe: ../recipe.yaml
    strategy:
      kind: greedy
      base: [{{name: clip, resolution: 64}}]
      candidates: [{{name: convnext, resolution: 64}}, {{name: sam, resolution: 64}}]
      max_rounds: 2
      stop_when_no_gain: false
    resources: {{cpus_per_trial: 2, max_concurrent_trials: 1}}
    """)


def run_once(root: Path, name: str, artifacts: str | None, workdir: Path) -> dict[str, float]:
    space = root / "spaces" / f"{name}.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE.format(name=name))
    loaded = load_checked_search(space)
    uri = f"sqlite:///{root / name}.db"
    started = time.perf_counter()
    run_and_report(loaded, tracking_uri=uri, workdir=workdir, artifacts=artifacts, reports_dir=root / "reports" / name,
                   executor="inline", show_progress=False)
    wall = time.perf_counter() - started
    runs = TrackingStore(uri).stage_runs(name)
    pre = runs[runs["stage"] == "prealign"]
    return {"wall_s": wall, "prealign_trained": float((pre["status"] == "trained").sum()),
            "prealign_reused": float((pre["status"] == "reused").sum())}


def warm_workspace(root: Path) -> Path:
    """A workspace holding the generated data and the trained tokenizer, copied into each measured run's."""
    space = root / "spaces" / "warm.yaml"
    space.parent.mkdir(parents=True, exist_ok=True)
    space.write_text(SPACE.format(name="warm"))
    loaded = load_checked_search(space)
    trial = loaded.factory.make(loaded.space.strategy.base_experts)
    ws = Workspace.at(root / "warm-ws")
    prepare_tokenizer(trial, prepare_data(trial.data, ws), ws)
    return ws.root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prealign-steps", type=int, default=60)
    parser.add_argument("--sft-steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="eaglesearch-stages-") as tmp:
        root = Path(tmp)
        (root / "recipe.yaml").write_text(recipe(args.prealign_steps, args.sft_steps))
        warm = warm_workspace(root)
        sides: dict[str, list[dict[str, float]]] = {"reuse": [], "no_reuse": []}
        for i in range(args.repeats):
            for side in (["reuse", "no_reuse"] if i % 2 == 0 else ["no_reuse", "reuse"]):
                workdir = root / f"ws-{side}-{i}"
                shutil.copytree(warm, workdir)
                artifacts = PER_TRIAL if side == "no_reuse" else str(workdir / "artifacts")
                print(f"[{side} #{i + 1}] running the greedy search...", file=sys.stderr, flush=True)
                result = run_once(root, f"{side.replace('_', '-')}-{i}", artifacts, workdir)
                print(f"[{side} #{i + 1}] {result['wall_s']:.1f}s; pre-alignment trained "
                      f"{result['prealign_trained']:.0f}, reused {result['prealign_reused']:.0f}",
                      file=sys.stderr, flush=True)
                sides[side].append(result)
        reuse = statistics.median(r["wall_s"] for r in sides["reuse"])
        no_reuse = statistics.median(r["wall_s"] for r in sides["no_reuse"])
        print(json.dumps({
            "search": "greedy clip + {convnext, sam}, 2 rounds, 4 trials, stages prealign>align>sft",
            "prealign_steps": args.prealign_steps, "sft_steps": args.sft_steps, "repeats": args.repeats,
            "wall_s_with_reuse": round(reuse, 2), "wall_s_without_reuse": round(no_reuse, 2),
            "ratio_without_over_with": round(no_reuse / reuse, 3),
            "prealign_trained_with_reuse": sides["reuse"][0]["prealign_trained"],
            "prealign_reused_with_reuse": sides["reuse"][0]["prealign_reused"],
            "prealign_trained_without_reuse": sides["no_reuse"][0]["prealign_trained"],
        }, indent=1))


if __name__ == "__main__":
    main()
