"""Shared helpers for end-to-end tests: a very small recipe and search spaces written into a temp project."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

from tests.support import warm_cli


def tiny_recipe(name: str = "tiny_test", *, train_per_task: int = 16, eval_per_task: int = 6,
                train: str = "{steps: 4, batch_size: 8, lr: 5.0e-4, log_every: 2}",
                eval: str = "{batch_size: 12, max_new_tokens: 3}", max_length: int = 96) -> str:
    """A very small recipe (1-layer LM, 4x4 grid, 64 px synthetic count/color) for end-to-end tests."""
    return f"""\
name: {name}
scale: tiny_random
seed: 0
model:
  grid: 4
  lm: {{kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}}
  tokenizer: {{kind: offline_bpe, vocab_size: 300}}
data:
  source: synthetic
  image_size: 64
  max_length: {max_length}
  synthetic:
    {{tasks: [count, color], train_per_task: {train_per_task}, eval_per_task: {eval_per_task}, image_size: 64, seed: 0}}
train: {train}
eval: {eval}
"""


# Eagle's three stages at test size: per-expert pre-alignment, projector alignment on captions, SFT.
PREALIGN_STAGES = """
  stages:
    - {name: prealign, per_expert: true, trainable: {experts: all, projector: true, lm: none}, steps: 3,
       batch_size: 8, lr: 1.0e-3, log_every: 1}
    - {name: align, data: caption, template: plain, trainable: {experts: none, projector: true, lm: none},
       steps: 2, batch_size: 8, lr: 1.0e-3, log_every: 1}
    - {name: sft, steps: 3, batch_size: 8, lr: 5.0e-4, log_every: 1}"""


TINY_RECIPE = tiny_recipe()


def greedy_space(name: str, candidates: list[str], max_rounds: int = 2, cpus: int = 1, concurrent: int = 1) -> str:
    return textwrap.dedent(f"""\
    name: {name}
    recipe: experiments/tiny_test.yaml
    strategy:
      kind: greedy
      base: [{{name: clip, resolution: 64}}]
      candidates: [{', '.join(candidates)}]
      max_rounds: {max_rounds}
    resources: {{cpus_per_trial: {cpus}, max_concurrent_trials: {concurrent}, max_failures: 1}}
    """)


def make_project(root: Path, spaces: dict[str, str]) -> Path:
    (root / "experiments").mkdir(parents=True, exist_ok=True)
    (root / "experiments" / "tiny_test.yaml").write_text(TINY_RECIPE)
    (root / "search_spaces").mkdir(exist_ok=True)
    for name, body in spaces.items():
        (root / "search_spaces" / f"{name}.yaml").write_text(body)
    return root


def cli(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m eaglesearch.cli *args`` in ``root`` with its own store (forked warm: tests/support/warm_cli.py)."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", MLFLOW_TRACKING_URI=f"sqlite:///{root}/mlflow.db",
               EAGLESEARCH_HOME=str(root / ".eaglesearch"))
    return warm_cli.run(list(args), root, env, timeout=timeout)
