"""Two measurements of what eaglesearch adds on top of the work itself.

1. **Per-trial orchestration overhead**: a grid search of N trivial trials (4 optimizer steps on a 1-layer LM) run
   through the real runner (Ray Tune, MLflow, the worker), with ``(search wall time − Σ in-trial compute) / N``,
   where in-trial compute is each trial's own ``cost/wall_s`` (data, tokenizer, model, train, eval). The inline
   executor is measured the same way for contrast. Ray start-up is reported separately.
2. **Training-loop throughput**: samples/s of ``eaglesearch.train.train`` against a minimal hand-written PyTorch
   loop (AdamW, backward, step, nothing else) on the same tiny model and batches, interleaved A/B/A/B in one
   process so machine noise hits both; the ratio of medians is reported.

    python benchmarks/overhead.py [--trials 6] [--loop-steps 40] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

import eaglesearch  # noqa: F401
from eaglesearch.app.run import run_and_report
from eaglesearch.data import TrainDataset, collate_train
from eaglesearch.model import build_eagle, resolve_expert
from eaglesearch.model.validate import load_checked_search
from eaglesearch.tracking import TrackingStore
from eaglesearch.train import batches, train
from eaglesearch.trial.data import prepare_data, prepare_tokenizer
from eaglesearch.trial.workspace import Workspace

RECIPE = """\
name: bench
scale: tiny
model:
  grid: 4
  lm: {hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
  tokenizer: {vocab_size: 300}
data:
  image_size: 64
  max_length: 96
  synthetic: {tasks: [count, color], train_per_task: 16, eval_per_task: 4, image_size: 64}
train: {steps: 4, batch_size: 8}
eval: {batch_size: 8, max_new_tokens: 2}
"""

LOOP_RECIPE = """\
name: loop
scale: tiny
model:
  grid: 8
data:
  synthetic: {tasks: [count, color, exist, detail], train_per_task: 64, eval_per_task: 4}
train: {steps: 40, batch_size: 16, warmup_ratio: 0.0}
"""


def orchestration(root: Path, trials: int, executor: str) -> dict[str, float]:
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "experiments" / "bench.yaml").write_text(RECIPE)
    seeds = ", ".join(str(i) for i in range(trials))
    space = root / f"{executor}.yaml"
    space.write_text(textwrap.dedent(f"""\
        name: overhead-{executor}
        recipe: experiments/bench.yaml
        strategy:
          kind: grid
          factors:
            experts: [[{{name: clip, resolution: 64}}]]
            seed: [{seeds}]
        resources: {{cpus_per_trial: 2, max_concurrent_trials: 1}}
        """))
    loaded = load_checked_search(space)
    uri = f"sqlite:///{root}/mlflow-{executor}.db"
    ray_start = 0.0
    if executor == "ray":  # started here, as `run_search` would, so that its time is reported on its own
        from eaglesearch.execution.ray_runner import init_ray

        t0 = time.perf_counter()
        init_ray(None, uri)
        ray_start = time.perf_counter() - t0
    # Data and tokenizer are cached by the first trial; warm them so every trial pays the same.
    data = prepare_data(loaded.factory.make(assignments={"experts": [{"name": "clip", "resolution": 64}]}).data,
                        Workspace.at(root / "ws"))
    del data
    t0 = time.perf_counter()
    outcome, _ = run_and_report(loaded, tracking_uri=uri, workdir=root / "ws", reports_dir=root / "reports",
                                executor=executor, show_progress=False)
    wall = time.perf_counter() - t0
    runs = TrackingStore(uri).trial_runs(outcome.parent_id)
    compute = float(runs["cost/wall_s"].sum())
    if executor == "ray":
        import ray

        ray.shutdown()
    return {"trials": len(runs), "wall_s": wall, "compute_s": compute, "overhead_per_trial_s": (wall - compute) / len(runs),
            "ray_init_s": ray_start}


def hand_written_loop(model, stream, steps: int, lr: float) -> float:
    """The baseline: the smallest correct PyTorch training loop."""
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        b = next(stream)
        loss = model(b["images"], b["input_ids"], b["attention_mask"], labels=b["labels"]).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def loop_throughput(root: Path, steps: int, repeats: int) -> dict[str, float]:
    import yaml

    from eaglesearch.spec import ExpertSpec, TrialFactory
    from eaglesearch.spec.recipe import Recipe

    recipe = Recipe.model_validate(yaml.safe_load(LOOP_RECIPE))
    trial = TrialFactory(recipe, expert_resolver=resolve_expert).make(
        [ExpertSpec(name="clip")], {"train.steps": steps})
    ws = Workspace.at(root / "loop-ws")
    data = prepare_data(trial.data, ws)
    tok = prepare_tokenizer(trial, data, ws)
    torch.manual_seed(0)
    model = build_eagle(trial.model, tok)
    ds = TrainDataset(data.train, tok, image_size=trial.data.image_size, num_visual_tokens=model.num_visual_tokens,
                      max_length=trial.data.max_length)
    # Both loops read from pre-collated batches so the comparison is the loop, not the data loader.
    stage = trial.train.joint_stages[-1]
    pregen = batches(ds, stage.batch_size, lambda b: collate_train(b, tok.pad_token_id), 0)
    cached = [next(pregen) for _ in range(steps)]
    samples = sum(b["input_ids"].shape[0] for b in cached)
    ours, base = [], []
    hand_written_loop(model, iter(cached), min(steps, 5), stage.lr)  # warm-up
    for _ in range(repeats):
        stats = train(model, iter(cached), stage)
        ours.append(samples / stats.wall_s)
        base.append(samples / hand_written_loop(model, iter(cached), steps, stage.lr))
    return {"ours_samples_per_s": statistics.median(ours), "hand_written_samples_per_s": statistics.median(base),
            "ratio": statistics.median(ours) / statistics.median(base)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument("--loop-steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-loop", action="store_true", help="measure the orchestration overhead only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if not args.no_loop:
            loop = loop_throughput(root, args.loop_steps, args.repeats)
            print(f"training loop: eaglesearch {loop['ours_samples_per_s']:.1f} samples/s, hand-written "
                  f"{loop['hand_written_samples_per_s']:.1f} samples/s, ratio {loop['ratio']:.3f} "
                  f"(median of {args.repeats}, {args.loop_steps} steps each)")
        found = {}
        for executor in ("inline", "ray"):
            r = found[executor] = orchestration(root / executor, args.trials, executor)
            print(f"orchestration [{executor}]: {r['trials']:.0f} trivial trials in {r['wall_s']:.1f}s, in-trial compute "
                  f"{r['compute_s']:.1f}s, overhead {r['overhead_per_trial_s']:.2f}s/trial"
                  + (f" (ray.init {r['ray_init_s']:.1f}s, not included)" if executor == "ray" else ""))
        print(f"overhead per trial, same run: ray {found['ray']['overhead_per_trial_s']:.2f}s, inline "
              f"{found['inline']['overhead_per_trial_s']:.2f}s; ray.init {found['ray']['ray_init_s']:.2f}s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
