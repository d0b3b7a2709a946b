"""Relative data paths in a recipe or search space are absolute by the time a trial is dispatched
(``eaglesearch/spec/data_paths.py``), so a worker node in another working directory reads the same files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eaglesearch.spec import load_search_space
from eaglesearch.spec.data_paths import absolute_path

RECIPE = """\
name: files
scale: tiny_random
model:
  grid: 4
  experts: [{name: clip, resolution: 64}]
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
  tokenizer: {kind: offline_bpe, vocab_size: 300}
data:
  source: llava
  image_size: 64
  train:
    sft: {format: llava, path: data/sft.json, image_folder: data/images}
    beside: {format: jsonl, path: beside.jsonl, image_folder: data/images}
    shards: {format: webdataset, path: "data/shards/part-{000..001}.tar"}
    remote: {format: webdataset, path: "s3://bucket/part-{000..001}.tar"}
  caption: {json_path: data/captions.json, image_folder: data/images}
  eval:
    color: {kind: llava, path: data/bench.json, image_folder: data/images}
train: {steps: 2, batch_size: 4}
eval: {batch_size: 4, max_new_tokens: 2}
"""
SPACE = """\
name: files
recipe: experiments/files.yaml
strategy:
  kind: grid
  factors:
    data.eval.color.path: [bench_a.json, data/bench.json]
"""


def _project(root: Path) -> Path:
    for name in ("data/sft.json", "data/captions.json", "data/bench.json", "data/shards/part-000.tar",
                 "experiments/beside.jsonl", "search_spaces/bench_a.json"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("[]")
    (root / "data" / "images").mkdir()
    (root / "experiments" / "files.yaml").write_text(RECIPE)
    (root / "search_spaces" / "files.yaml").write_text(SPACE)
    return root


def test_relative_data_paths_are_absolute_and_resolvable_from_another_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = _project(tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(project)  # where the driver loads the search
    loaded = load_search_space("search_spaces/files.yaml")
    trials = [loaded.factory.make(assignments={"data.eval.color.path": v}) for v in ("bench_a.json", "data/bench.json")]
    monkeypatch.chdir(elsewhere)  # where a worker node runs the trial

    sources = trials[0].data.mixture("sft")
    assert sources is not None
    paths = {name: (s.path, s.image_folder) for name, s in sources.items()}
    assert paths["sft"] == (str(project / "data/sft.json"), str(project / "data/images"))  # the recipe's parent
    assert paths["beside"][0] == str(project / "experiments/beside.jsonl")  # beside the recipe wins
    assert paths["shards"][0] == str(project / "data/shards/part-{000..001}.tar")  # a pattern: its folder exists
    assert paths["remote"][0] == "s3://bucket/part-{000..001}.tar"  # URLs as written
    caption = trials[0].data.mixture("caption")
    assert caption is not None and caption["caption"].path == str(project / "data/captions.json")
    # a path the search space wrote is read from the search space's side
    assert trials[0].data.eval["color"].path == str(project / "search_spaces/bench_a.json")
    assert trials[1].data.eval["color"].path == str(project / "data/bench.json")
    for trial in trials:
        for source in trial.data.mixture("sft").values():  # type: ignore[union-attr]
            if source.path and "://" not in source.path and "{" not in source.path:
                assert os.path.isabs(source.path) and Path(source.path).is_file()
        assert Path(trial.data.eval["color"].path).is_file()
    assert trials[0].key != trials[1].key
    # What travels to a worker (the trial's JSON) carries the absolute paths.
    assert str(project / "data/sft.json") in trials[0].model_dump_json()


def test_a_path_found_nowhere_is_taken_from_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    monkeypatch.chdir(tmp_path)
    roots = (tmp_path / "a", tmp_path / "b")
    assert absolute_path("only/on/the/nodes.json", roots) == str(tmp_path / "only/on/the/nodes.json")
    assert absolute_path("/abs/x.json", roots) == "/abs/x.json"
    assert absolute_path("~/x.json", roots) == "~/x.json"
    assert absolute_path(None, roots) is None
