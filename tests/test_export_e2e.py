"""A search keeps its winner end to end: the best trial's weights stay with its run (the other's are deleted) and
are registered; ``eaglesearch export`` writes the folder; ``eaglesearch.load``, ``eaglesearch predict``, the
registered MLflow pyfunc and lmms-eval's harness (on a local task) all answer as the trial's own evaluation did."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

import eaglesearch
from eaglesearch.app.run import run_and_report
from eaglesearch.cli import app
from eaglesearch.spec import load_search_space
from eaglesearch.tracking import TrackingStore, Winners

pytestmark = pytest.mark.slow

# Nearly untrained (lr 1e-6) and untied: the models answer arbitrary tokens, so equal answers mean equal computation.
RECIPE = """\
name: keep_e2e
scale: tiny_random
seed: 0
model:
  grid: 4
  experts: [{name: clip, resolution: 64}]
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64,
       tie_embeddings: false}
  tokenizer: {kind: offline_bpe, vocab_size: 300}
data:
  source: synthetic
  image_size: 64
  max_length: 96
  synthetic: {tasks: [count], train_per_task: 8, eval_per_task: 6, image_size: 64, seed: 0}
train: {steps: 1, batch_size: 8, lr: 1.0e-6, log_every: 1}
eval: {batch_size: 6, max_new_tokens: 4}
"""
SPACE = """\
name: keep-e2e
recipe: experiments/keep_e2e.yaml
strategy: {kind: grid, factors: {seed: [0, 1]}}
keep_best: 1
resources: {cpus_per_trial: 1, max_concurrent_trials: 1}
"""
TASK = """\
task: eaglesearch_count
dataset_path: json
dataset_kwargs: {data_files: {test: DATA}}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: answer
generation_kwargs: {max_new_tokens: 4, until: ["\\n\\n"]}
metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]
"""
TASK_UTILS = """\
from PIL import Image


def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]


def doc_to_text(doc):
    return doc["prompt"]
"""


def test_search_keeps_exports_and_serves_its_winner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "keep_e2e.yaml").write_text(RECIPE)
    (tmp_path / "space.yaml").write_text(SPACE)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    outcome, _ = run_and_report(load_search_space(tmp_path / "space.yaml"), tracking_uri=uri, workdir=tmp_path / ".es",
                                reports_dir=tmp_path / "reports", executor="inline", show_progress=False)

    # Kept: the best trial's weights, registered; the other trial's deleted.
    store, winners = TrackingStore(uri), Winners(uri)
    runs = store.trial_runs(outcome.parent_id)
    assert len(runs) == 2
    best = winners.ranked(outcome.parent_id, "objective", "max")
    assert len(best) == 1 and [k.trial for k in outcome.kept] == best
    assert {r: winners.has_weights(r) for r in runs["run_id"]} == {r: r == best[0].run_id for r in runs["run_id"]}
    assert winners.find("keep-e2e")["key"] == best[0].key

    # What the trial answered on its benchmark, from its record.
    recorded = [json.loads(line) for line in
                store.download_artifact(best[0].run_id, "predictions.jsonl", tmp_path).read_text().splitlines()]
    images, prompts = [r["image"] for r in recorded], [r["prompt"] for r in recorded]
    expected = [r["prediction"] for r in recorded]
    assert any(expected), "the model must answer something for the comparison to mean anything"

    # export → load → generate; predict on the command line (the commands run in this process: a subprocess would
    # spend its time importing torch again).
    folder = tmp_path / "winner"
    done = CliRunner().invoke(app, ["export", "keep-e2e", str(folder), "--tracking-uri", uri])
    assert done.exit_code == 0, done.output
    assert "objective" in (folder / "README.md").read_text() and best[0].key in (folder / "README.md").read_text()
    assert eaglesearch.load(folder).generate(images, prompts) == expected
    done = CliRunner().invoke(app, ["predict", str(folder), images[0], prompts[0]])
    assert done.exit_code == 0 and done.stdout.strip() == expected[0], done.output

    # The registered version, through MLflow's own loader.
    import mlflow.pyfunc

    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    served = mlflow.pyfunc.load_model("models:/keep-e2e@best")
    assert list(served.predict(pd.DataFrame({"image": images, "prompt": prompts}))) == expected

    # lmms-eval's harness on a local task over the same items.
    pytest.importorskip("lmms_eval")
    from lmms_eval.evaluator import simple_evaluate
    from lmms_eval.tasks import TaskManager

    from eaglesearch.export.lmms_eval import EagleSearchLMM, cut_at_stops

    tasks = tmp_path / "lmms_tasks"
    tasks.mkdir()
    data = tmp_path / "count.jsonl"
    data.write_text("".join(json.dumps({"image": i, "prompt": p, "answer": r["references"][0]}) + "\n"
                            for i, p, r in zip(images, prompts, recorded, strict=True)))
    (tasks / "count.yaml").write_text(TASK.replace("DATA", str(data)))
    (tasks / "utils.py").write_text(TASK_UTILS)
    monkeypatch.setenv("LMMS_EVAL_DATASETS_CACHE", str(tmp_path / "hf_datasets"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    results = simple_evaluate(model=EagleSearchLMM(pretrained=str(folder)), tasks=["eaglesearch_count"],
                              task_manager=TaskManager(include_path=str(tasks)), bootstrap_iters=0, log_samples=True)
    answers = [s["filtered_resps"][0] for s in sorted(results["samples"]["eaglesearch_count"],
                                                      key=lambda s: s["doc_id"])]
    assert answers == [cut_at_stops(e, ["\n\n"]) for e in expected]
    exact = sum(a == r["references"][0] for a, r in zip(answers, recorded, strict=True)) / len(recorded)
    assert results["results"]["eaglesearch_count"]["exact_match,none"] == pytest.approx(exact)
    assert os.path.isdir(tmp_path / "hf_datasets")
