"""The preflight checks: visual tokens as the built model has them, a text bound no real sample goes under,
every greedy expert set checked, and data paths (with the opt-out)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eaglesearch.app.plan import preflight_search as preflight
from eaglesearch.data import read_llava_json, write_synthetic
from eaglesearch.data.conversation import encode_for_training
from eaglesearch.data.templates import TEMPLATES, get_template
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.model.validate import load_checked_search
from eaglesearch.search import reachable_trials
from eaglesearch.spec import ModelSpec, SpecError, SyntheticDataSpec, TokenizerSpec
from eaglesearch.trial.preflight import VisualTokens, min_text_tokens

LM = {"kind": "tiny_llama", "hidden_size": 32, "num_layers": 1, "num_heads": 2, "num_kv_heads": 1,
      "intermediate_size": 64}
RECIPE = """\
name: pf
scale: tiny
model:
  grid: 4
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
data: {image_size: 64, max_length: 96, synthetic: {tasks: [count], train_per_task: 2, eval_per_task: 2,
        image_size: 64}}
train: {steps: 1, batch_size: 2}
"""


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory):
    """Real synthetic conversations (questions and captions) and an offline tokenizer trained on them."""
    root = tmp_path_factory.mktemp("syn")
    data = write_synthetic(SyntheticDataSpec(tasks=("count", "color", "exist", "detail"), train_per_task=3,
                                             eval_per_task=1, image_size=64), root / "d")
    found = read_llava_json(data.train_json, data.image_folder) + read_llava_json(data.caption_json,
                                                                                   data.image_folder)
    corpus = [get_template("chatml").render(s.turns) for s in found]
    return found, load_tokenizer(TokenizerSpec(vocab_size=300), corpus=lambda: corpus)


@pytest.mark.parametrize("model", [
    {"experts": [{"name": "clip", "resolution": 64}]},
    {"experts": [{"name": "clip", "resolution": 64}, {"name": "convnext", "resolution": 128}],
     "fusion": "sequence_append"},
    {"experts": [{"name": "clip", "resolution": 64}, {"name": "convnext", "resolution": 128},
                 {"name": "sam", "resolution": 128}], "fusion": "sequence_append"},
    {"experts": [{"name": "clip", "resolution": 64, "resize": "tile", "tiles": 2}]},
    {"experts": [{"name": "clip", "resolution": 64}, {"name": "convnext", "resolution": 128}], "fusion": "llava_hr"},
], ids=["channel_concat", "append2", "append3", "tiled", "llava_hr"])
def test_visual_tokens_match_the_built_model(model: dict, samples) -> None:
    spec = ModelSpec.model_validate({**model, "grid": 4, "lm": LM,
                                     "experts": [{**e, "preset": "tiny"} for e in model["experts"]]})
    assert VisualTokens()(spec) == build_eagle(spec, samples[1]).num_visual_tokens


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_text_bound_is_never_above_a_real_sample(template: str, samples) -> None:
    found, tokenizer = samples
    text = []
    for sample in found:
        if template == "plain" and len([r for r, _ in sample.turns if r == "assistant"]) > 1:
            continue
        ids, _ = encode_for_training(tokenizer, sample, 1, 10**6, template=template)
        text.append(len(ids) - 1)  # one visual token
    assert 0 < min_text_tokens(template) <= min(text)


def _project(tmp_path: Path, space: str, recipe: str = RECIPE) -> Path:
    (tmp_path / "experiments").mkdir(exist_ok=True)
    (tmp_path / "experiments" / "pf.yaml").write_text(recipe)
    (tmp_path / "s.yaml").write_text(space)
    return tmp_path / "s.yaml"


def test_greedy_checks_every_reachable_expert_set(tmp_path: Path) -> None:
    space = ("name: g\nrecipe: experiments/pf.yaml\nstrategy: {kind: greedy, base: [clip], "
             "candidates: [convnext, sam, dinov2], max_rounds: 2}\n")
    loaded = load_checked_search(_project(tmp_path, space))
    labels = sorted(re.sub(r"@\d+", "", c.trial.label) for c in reachable_trials(loaded))
    assert labels == sorted(["clip", "clip+convnext", "clip+sam", "clip+dinov2", "clip+convnext+sam",
                             "clip+convnext+dinov2", "clip+sam+dinov2"])


def test_max_length_limit_is_exactly_visual_plus_the_text_bound(tmp_path: Path) -> None:
    """Sequence append of three experts on a 4x4 grid: 48 visual tokens; the limit is 48 + the chatml bound."""
    need = 48 + min_text_tokens("chatml")
    space = ("name: g\nrecipe: experiments/pf.yaml\noverrides: {{model: {{fusion: sequence_append}}, "
             "data: {{max_length: {n}}}}}\nstrategy: {{kind: greedy, base: [clip], candidates: [convnext, sam]}}\n")
    with pytest.raises(SpecError) as err:
        preflight(load_checked_search(_project(tmp_path, space.format(n=need - 1))))
    (issue,) = err.value.issues
    assert issue.field == "overrides.data.max_length" and issue.line == 3
    assert f"at least {need}" in issue.message and "'clip@64+convnext@128+sam@256' (48 visual" in issue.message
    assert "clip@128+convnext@256'" not in issue.message.replace("+sam@256'", "")  # 32 + text fits: not listed
    preflight(load_checked_search(_project(tmp_path, space.format(n=need))))


def test_missing_llava_paths_are_reported_unless_opted_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "train.json").write_text("[]")
    recipe = RECIPE.replace("data: {image_size", "data: {source: llava, train: {json_path: data/train.json, "
                            "image_folder: data/images}, eval: {pope: {kind: pope, path: data/pope.parquet, "
                            "image_folder: data/pope_images}}, image_size")
    space = "name: g\nrecipe: experiments/pf.yaml\nstrategy: {kind: grid, factors: {experts: [[clip]]}}\n"
    loaded = load_checked_search(_project(tmp_path, space, recipe))
    with pytest.raises(SpecError) as err:
        preflight(loaded)
    assert sorted(i.field for i in err.value.issues) == ["data.eval.pope.image_folder", "data.eval.pope.path"]
    assert all(i.file == tmp_path / "experiments" / "pf.yaml" and "--no-check-paths" in i.message
               for i in err.value.issues)
    preflight(loaded, check_paths_exist=False)


def test_plan_names_a_sample_over_max_length_without_a_traceback(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Visual tokens plus the text bound fit (validation passes) but a real prompt does not: plan stops cleanly
    on the first sample it encodes, naming max_length."""
    from typer.testing import CliRunner

    from eaglesearch.cli import app

    fits = 16 + min_text_tokens("chatml")  # clip on a 4x4 grid
    recipe = RECIPE.replace("max_length: 96", f"max_length: {fits}")
    space = "name: g\nrecipe: experiments/pf.yaml\nstrategy: {kind: grid, factors: {experts: [[clip]]}}\n"
    path = _project(tmp_path, space, recipe)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["plan", str(path), "--workdir", str(tmp_path / "work")])
    output = " ".join(result.output.split())
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, output
    assert f"over max_length {fits}" in output and "raise data.max_length" in output and "Traceback" not in output
