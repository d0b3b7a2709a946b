"""Malformed search spaces and recipes through the real command line: each one stops with exit 2, one message that
names the dotted field to fix, no traceback, and nothing written to the working directory."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eaglesearch.cli import app

RECIPE = """\
name: corpus
scale: tiny
model:
  grid: 4
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
  tokenizer: {kind: offline_bpe, vocab_size: 300}
data:
  source: synthetic
  image_size: 64
  max_length: 96
  synthetic: {tasks: [count, color], train_per_task: 4, eval_per_task: 4, image_size: 64}
train: {steps: 2, batch_size: 4, lr: 5.0e-4}
eval: {batch_size: 4, max_new_tokens: 2}
"""

GREEDY = """\
name: corpus-greedy
recipe: experiments/r.yaml
strategy:
  kind: greedy
  base: [clip]
  candidates: [convnext, sam]
"""

GRID = """\
name: corpus-grid
recipe: experiments/r.yaml
strategy:
  kind: grid
  factors:
    experts: [[clip], [clip, convnext]]
    train.lr: [5.0e-4, 1.0e-3]
"""

LLAVA_DATA = """\
data:
  source: llava
  image_size: 64
  max_length: 96
  train: {json_path: data/train.json, image_folder: data/images}
  eval:
    textvqa: {kind: textvqa, path: data/eval/textvqa.parquet}
"""


@dataclass(frozen=True)
class Case:
    id: str
    space: str
    expected: str  # the dotted field (or, for file-level problems, the phrase) the output must name
    recipe: str = RECIPE
    single: bool = True  # one mistake: one message
    command: str = "validate"


def greedy(strategy_lines: str = "", top: str = "") -> str:
    """The greedy space with extra lines appended under ``strategy:`` and at the top level."""
    return GREEDY + textwrap.indent(strategy_lines, "  ") + top


def recipe_with(old: str, new: str) -> str:
    assert old in RECIPE
    return RECIPE.replace(old, new)


CASES = [
    # ---- the search space's own fields
    Case("missing-name", GREEDY.replace("name: corpus-greedy\n", ""), "name"),
    Case("bad-name", GREEDY.replace("corpus-greedy", "'bad name!'"), "name"),
    Case("unknown-top-key", greedy(top="strategi: {}\n"), "strategi"),
    Case("unknown-kind", GREEDY.replace("kind: greedy", "kind: random"), "strategy.kind"),
    Case("missing-kind", GREEDY.replace("  kind: greedy\n", ""), "strategy"),
    Case("empty-base", GREEDY.replace("base: [clip]", "base: []"), "strategy.base"),
    Case("bad-expert-resolution", GREEDY.replace("base: [clip]", "base: [{name: clip, resolution: -3}]"),
         "strategy.base[0].resolution"),
    Case("unknown-expert-key", GREEDY.replace("base: [clip]", "base: [{name: clip, bogus: 1}]"),
         "strategy.base[0].bogus"),
    Case("expert-not-str-or-mapping", GREEDY.replace("base: [clip]", "base: [3]"), "strategy.base[0]"),
    Case("unknown-expert-name", GREEDY.replace("[convnext, sam]", "[convnxt, sam]"), "strategy.candidates[0]"),
    Case("candidate-in-base", GREEDY.replace("[convnext, sam]", "[clip, sam]"), "already in base"),
    Case("candidate-twice", GREEDY.replace("[convnext, sam]", "[sam, sam]"), "listed twice"),
    Case("max-rounds-zero", greedy("max_rounds: 0\n"), "strategy.max_rounds"),
    Case("bad-mode", greedy("mode: maximum\n"), "strategy.mode"),
    Case("bad-on-tie", greedy("on_tie: coin\n"), "strategy.on_tie"),
    Case("tie-seeds-too-many", greedy("tie_seeds: 20\n"), "strategy.tie_seeds"),
    Case("objective-unknown-benchmark", greedy("objective: score/nonexistent_bench\n"), "strategy.objective"),
    Case("objective-typo", greedy("objective: objectiv\n"), "strategy.objective"),
    Case("resolution-off-stride", GREEDY.replace("base: [clip]", "base: [{name: clip, resolution: 100}]"),
         "strategy.base"),
    Case("resources-zero-cpus", greedy(top="resources: {cpus_per_trial: 0}\n"), "resources.cpus_per_trial"),
    Case("resources-unknown-key", greedy(top="resources: {gpus: 1}\n"), "resources.gpus"),
    Case("recipe-not-found", GREEDY.replace("experiments/r.yaml", "experiments/nope.yaml"), "recipe"),
    # ---- grid strategies
    Case("grid-no-factors", GRID.split("  factors:")[0] + "  factors: {}\n", "strategy.factors"),
    Case("grid-factor-no-values", GRID.replace("[5.0e-4, 1.0e-3]", "[]"), "strategy.factors"),
    Case("grid-exclude-unknown-factor", GRID + "  exclude: [{model.fusion: sequence_append}]\n", "not factors"),
    Case("grid-baseline-unknown-factor", GRID + "  baseline: {model.grid: 4}\n", "not factors"),
    Case("grid-baseline-no-match", GRID + "  baseline: {train.lr: 0.1}\n", "strategy.baseline"),
    Case("grid-all-excluded", GRID.replace("[[clip], [clip, convnext]]", "[[clip]]").replace(
        "[5.0e-4, 1.0e-3]", "[5.0e-4]") + "  exclude: [{experts: [clip]}]\n", "strategy.exclude"),
    Case("grid-bad-factor-value", GRID.replace("train.lr: [5.0e-4, 1.0e-3]", "model.grid: [4, -2]"),
         "strategy.factors.model.grid"),
    Case("grid-factor-unknown-field", GRID.replace("train.lr", "model.bogus"), "strategy.factors.model.bogus"),
    Case("grid-unknown-fusion", GRID.replace("train.lr: [5.0e-4, 1.0e-3]", "model.fusion: [channel_concat, mix]"),
         "strategy.factors.model.fusion"),
    Case("grid-lr-shorthand-negative", GRID.replace("1.0e-3]", "-1]"), "strategy.factors.train.lr"),
    Case("grid-injection-one-expert", GRID.replace("train.lr: [5.0e-4, 1.0e-3]", "model.fusion: [llava_hr]"),
         "strategy.factors"),
    Case("grid-tiled-channel-concat-mix", GRID.replace(
        "[[clip], [clip, convnext]]", "[[{name: clip, resize: tile}, convnext]]"), "strategy.factors"),
    Case("grid-objective-unknown", GRID + "  objective: score/textvqa\n", "strategy.objective"),
    # ---- overrides: reported where they are written
    Case("override-negative-grid", greedy(top="overrides: {model: {grid: -8}}\n"), "overrides.model.grid"),
    Case("override-unknown-key", greedy(top="overrides: {model: {bogus: 1}}\n"), "overrides.model.bogus"),
    Case("override-shorthand-lr", greedy(top="overrides: {train: {lr: -1}}\n"), "overrides.train.lr"),
    Case("override-unknown-stage", greedy(top="overrides: {train: {stages: {nosuch: {lr: 1.0}}}}\n"),
         "overrides.train.stages.nosuch"),
    Case("override-unknown-benchmark", greedy(top="overrides: {eval: {benchmarks: [count, nope]}}\n"),
         "overrides.eval.benchmarks[1]"),
    Case("override-sequence-append-too-long", GRID + "overrides: {model: {fusion: sequence_append}, "
         "data: {max_length: 30}}\n", "overrides.data.max_length"),
    Case("override-fusion-heads-width", GRID.replace("[[clip], [clip, convnext]]", "[[clip, convnext]]") +
         "overrides: {model: {fusion: mini_gemini, fusion_heads: 3}}\n", "strategy.factors.experts"),
    Case("injection-fusion-greedy-base", greedy(top="overrides: {model: {fusion: llava_hr}}\n"), "strategy.base"),
    # ---- the recipe: reported in the recipe file
    Case("recipe-unknown-key", GREEDY, "model.bogus", recipe=recipe_with("  grid: 4\n", "  grid: 4\n  bogus: 1\n")),
    Case("recipe-zero-max-length", GREEDY, "data.max_length", recipe=recipe_with("max_length: 96", "max_length: 0")),
    Case("recipe-tiled-over-max-length", GRID.replace("[[clip], [clip, convnext]]", "[[{name: clip, resize: tile, "
         "tiles: 3}]]"), "data.max_length", recipe=recipe_with("max_length: 96", "max_length: 100")),
    Case("recipe-unknown-task", GREEDY, "data.synthetic.tasks[0]",
         recipe=recipe_with("tasks: [count, color]", "tasks: [counting, color]")),
    Case("recipe-bad-objective", GREEDY, "eval", recipe=recipe_with("max_new_tokens: 2}", "objective: general}")),
    Case("recipe-aggregate-member", GREEDY, "eval.aggregates.g.members[1]", recipe=recipe_with(
        "max_new_tokens: 2}", "objective: g, aggregates: {g: {members: [count, textvqa]}}}")),
    Case("recipe-zero-steps", GREEDY, "train.steps", recipe=recipe_with("steps: 2,", "steps: 0,")),
    Case("recipe-hf-tokenizer-no-path", GREEDY, "model.tokenizer",
         recipe=recipe_with("{kind: offline_bpe, vocab_size: 300}", "{kind: hf}")),
    Case("recipe-lm-heads", GREEDY, "model.lm",
         recipe=recipe_with("hidden_size: 32, num_layers: 1, num_heads: 2", "hidden_size: 33, num_layers: 1, num_heads: 2")),
    Case("recipe-llava-json-missing", GREEDY, "data.train.json_path", single=False,
         recipe=RECIPE.split("data:")[0] + LLAVA_DATA + "train:" + RECIPE.split("train:")[1]),
    Case("recipe-llava-eval-missing", GREEDY, "data.eval.textvqa.path", single=False,
         recipe=RECIPE.split("data:")[0] + LLAVA_DATA + "train:" + RECIPE.split("train:")[1]),
    # ---- the file itself
    Case("yaml-syntax", GREEDY + "resources: [\n", "not valid YAML"),
    Case("duplicate-key", GREEDY + "name: again\n", "name"),
    Case("not-a-mapping", "- just\n- a list\n", "YAML mapping"),
    # ---- plan and run stop the same way before anything is written
    Case("plan-override-negative-grid", greedy(top="overrides: {model: {grid: -8}}\n"), "overrides.model.grid",
         command="plan"),
    Case("run-objective-unknown", greedy("objective: score/nonexistent_bench\n"), "strategy.objective",
         command="run"),
    Case("run-sequence-append-too-long", GRID + "overrides: {model: {fusion: sequence_append}, "
         "data: {max_length: 30}}\n", "overrides.data.max_length", command="run"),
]


def test_corpus_is_large_and_unique() -> None:
    assert len(CASES) >= 40 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input_stops_cleanly(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "r.yaml").write_text(case.recipe)
    (tmp_path / "space.yaml").write_text(case.space)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.delenv("EAGLESEARCH_HOME", raising=False)
    monkeypatch.delenv("EAGLESEARCH_ARTIFACTS", raising=False)
    before = sorted(p.name for p in tmp_path.iterdir())

    args = [case.command, "space.yaml"] + (["--executor", "inline", "--quiet"] if case.command == "run" else [])
    result = CliRunner().invoke(app, args)
    output = " ".join(result.output.split())  # rich wraps long lines

    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    assert case.expected in output, output
    if case.single:
        assert "problems:" not in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no mlflow.db, artifacts, workspace or reports


def test_metric_names_are_the_names_a_trial_records() -> None:
    """The names validation accepts for a strategy objective are exactly the keys ``summary_metrics`` logs."""
    from eaglesearch.evaluate.summary import Summary, summary_metrics
    from eaglesearch.evaluate.uncertainty import Interval
    from eaglesearch.spec.metric_names import metric_names

    interval = Interval(point=0.5, low=0.4, high=0.6, n_units=10, n_resamples=100)
    benches = ["count", "textvqa"]
    summary = Summary(values={b: {"accuracy": 0.5} for b in benches}, primary=dict.fromkeys(benches, 0.5),
                      intervals=dict.fromkeys(benches, interval), objective=0.5, objective_interval=interval)
    assert sorted(summary_metrics(summary)) == sorted(metric_names(benches))
