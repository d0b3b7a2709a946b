"""Relative paths in a trial mean the folder the search was started from (``trial/project.py``): a trial runs
there when its node has that folder, and fails with one message naming the paths when it does not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from eaglesearch.spec import TrialSpec
from eaglesearch.trial.project import ProjectFolderMissing, in_project, relative_paths

TRIAL = {
    "model": {"experts": [{"name": "clip", "resolution": 64}], "grid": 4,
              "lm": {"kind": "tiny_llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
                     "intermediate_size": 64},
              "tokenizer": {"kind": "offline_bpe", "vocab_size": 300}},
    "data": {"source": "llava", "image_size": 64,
             "train": {"json_path": "data/syn/train.json", "image_folder": "data/syn/images"},
             "eval": {"color": {"kind": "llava", "path": "/abs/eval/color.json", "image_folder": "data/syn/images"}}},
}


def trial(**data) -> TrialSpec:
    spec = {**TRIAL, "data": {**TRIAL["data"], **data}}
    return TrialSpec.model_validate(spec)


def test_relative_paths_are_the_local_ones_not_absolute() -> None:
    found = relative_paths(trial())
    assert found == [("data.train.json_path", "data/syn/train.json"), ("data.train.image_folder", "data/syn/images"),
                     ("data.eval.color.image_folder", "data/syn/images")]


def test_the_trial_runs_in_the_drivers_folder_and_the_directory_comes_back(tmp_path: Path) -> None:
    before = os.getcwd()
    with in_project(str(tmp_path), trial()):
        assert os.getcwd() == str(tmp_path)
    assert os.getcwd() == before
    with pytest.raises(KeyError), in_project(str(tmp_path), trial()):
        raise KeyError("the trial failed")
    assert os.getcwd() == before


def test_a_node_without_the_drivers_folder_names_the_relative_paths_and_the_fix(tmp_path: Path) -> None:
    gone = str(tmp_path / "not-on-this-node")
    with pytest.raises(ProjectFolderMissing) as err, in_project(gone, trial()):
        pytest.fail("the block must not run")
    message = str(err.value)
    assert "data.train.json_path = 'data/syn/train.json'" in message and gone in message
    assert "absolute paths on a mount every node sees" in message
    absolute = trial(train={"json_path": "/shared/train.json", "image_folder": "/shared/images"},
                     eval={"color": {"kind": "llava", "path": "/shared/color.json", "image_folder": "/shared/img"}})
    before = os.getcwd()
    with in_project(gone, absolute):  # nothing relative: runs where it is
        assert os.getcwd() == before
