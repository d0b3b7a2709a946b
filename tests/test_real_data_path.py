"""The paper-scale data path on files the test writes: LLaVA-format training json (with a bad record the policy
skips and counts), a POPE jsonl scored by likelihood, and an MMBench TSV with base64 images scored circularly."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from eaglesearch.data import write_synthetic
from eaglesearch.spec import SyntheticDataSpec
from tests.e2e_helpers import cli

pytestmark = pytest.mark.slow

RECIPE = """\
name: real_files
scale: tiny
model:
  grid: 4
  lm: {{kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}}
  tokenizer: {{kind: offline_bpe, vocab_size: 300}}
data:
  source: llava
  image_size: 64
  max_length: 256
  template: vicuna_v1
  on_problem: {{default: error, missing_image: skip}}
  train: {{json_path: {train}, image_folder: {images}}}
  eval:
    pope: {{kind: pope, path: {pope}, image_folder: {images}}}
    mmbench: {{kind: mmbench, path: {mmbench}}}
train: {{steps: 4, batch_size: 8}}
eval: {{batch_size: 8, max_new_tokens: 2}}
"""

SPACE = """\
name: real-files
recipe: experiments/real_files.yaml
strategy:
  kind: grid
  factors:
    experts: [[{name: clip, resolution: 64}]]
"""


def png_b64(color: str) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_llava_json_pope_and_mmbench_through_a_trial(tmp_path: Path) -> None:
    synthetic = write_synthetic(SyntheticDataSpec(tasks=("color",), train_per_task=12, eval_per_task=2,
                                                  image_size=64), tmp_path / "syn")
    records = json.loads(synthetic.train_json.read_text())
    records.append({"id": "ghost", "image": "no/such/file.png",
                    "conversations": [{"from": "human", "value": "<image>\nWhat color?"},
                                      {"from": "gpt", "value": "red"}]})
    train = tmp_path / "train.json"
    train.write_text(json.dumps(records))
    some_image = records[0]["image"]
    pope = tmp_path / "coco_pope_random.jsonl"
    pope.write_text("".join(json.dumps({"question_id": i, "image": some_image, "text": f"Is there a thing {i}?",
                                        "label": "yes" if i % 2 else "no"}) + "\n" for i in range(6)))
    mmbench = tmp_path / "MMBench_DEV_EN.tsv"
    pd.DataFrame([{"index": i, "question": "Which color?", "hint": None, "A": "red", "B": "blue", "C": "green",
                   "D": "gray", "answer": "ABCD"[i % 4], "category": "color", "l2-category": "attribute",
                   "image": png_b64("red")} for i in range(3)]).to_csv(mmbench, sep="\t", index=False)

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "real_files.yaml").write_text(RECIPE.format(
        train=train, images=synthetic.image_folder, pope=pope, mmbench=mmbench))
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "s.yaml").write_text(SPACE)

    proc = cli(tmp_path, "run", "search_spaces/s.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from eaglesearch.tracking import TrackingStore

    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    runs = store.trial_runs(store.latest_parent("real-files"))
    run = runs.iloc[0]
    assert run["status_tag"] == "finished", run.get("error")
    assert run["data/skipped/missing_image"] == 1 and run["data/kept"] == len(records) - 1
    assert 0 <= run["score/pope"] <= 1 and 0 <= run["score/mmbench"] <= 1
    assert run["score_low/mmbench"] <= run["score/mmbench"] <= run["score_high/mmbench"]
    rescored = cli(tmp_path, "rescore", "real-files")
    assert rescored.returncode == 0, rescored.stdout + rescored.stderr
