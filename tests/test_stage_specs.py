"""Training stages as specs: shorthands, keys, overrides by stage name, validation, built-in recipes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from pydantic import ValidationError

from eaglesearch.spec import ExpertSpec, ModelSpec, SpecError, TrainSpec, TrialSpec
from eaglesearch.spec.errors import SpecWarning
from eaglesearch.spec.load import load_recipe, load_search_space
from eaglesearch.spec.merge import deep_merge, dropped_by_lists, set_path
from eaglesearch.spec.train import DEFAULT_STEPS, StageSpec, TrainableSpec

ROOT = Path(__file__).resolve().parents[1]
MODEL = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random"),))
PREALIGN = {"name": "prealign", "per_expert": True, "trainable": {"experts": "all", "projector": True, "lm": "none"},
            "steps": 5}
ALIGN = {"name": "align", "data": "caption", "trainable": {"experts": "none", "projector": True, "lm": "none"},
         "steps": 4}
SFT = {"name": "sft", "steps": 6}


def trial(stages: list[dict], **data) -> TrialSpec:
    return TrialSpec(model=MODEL, train=TrainSpec.model_validate({"stages": stages}), **data)


def test_flat_train_is_one_sft_stage_with_the_same_key_as_the_explicit_list() -> None:
    flat = TrialSpec(model=MODEL, train=TrainSpec.model_validate({"steps": 7, "lr": 1e-4}))
    listed = trial([{"name": "sft", "steps": 7, "lr": 1e-4}])
    assert flat.train.stages[0].name == "sft" and flat.train.label == "sft"
    assert flat.key == listed.key
    assert TrainSpec().stages[0].steps == DEFAULT_STEPS


def test_setting_next_to_stages_applies_to_every_stage() -> None:
    spec = TrainSpec.model_validate({"stages": [PREALIGN, {**ALIGN, "steps": None, "epochs": 2}, SFT], "steps": 3,
                                     "lr": 1e-3})
    assert [s.steps for s in spec.stages] == [3, 3, 3] and {s.lr for s in spec.stages} == {1e-3}
    assert all(s.epochs is None for s in spec.stages)


def test_disabled_stage_is_not_run_and_not_keyed() -> None:
    with_off = trial([{**PREALIGN, "enabled": False}, ALIGN, SFT])
    without = trial([ALIGN, SFT])
    assert with_off.key == without.key
    assert with_off.train.label == "align>sft" and with_off.train.per_expert_stages == ()
    assert trial([PREALIGN, ALIGN, SFT]).key != without.key


def test_logging_cadence_is_not_part_of_the_key() -> None:
    a = trial([{**SFT, "log_every": 1, "checkpoint_every": 2}])
    b = trial([{**SFT, "log_every": 50, "checkpoint_every": 0}])
    assert a.key == b.key
    assert trial([{**SFT, "lr": 1e-3}]).key != a.key


@pytest.mark.parametrize(
    ("stages", "words"),
    [
        ([SFT, PREALIGN], ["per-expert stages must come before", "prealign"]),
        ([PREALIGN], ["only per-expert stages"]),
        ([SFT, {**SFT}], ["unique", "sft"]),
        ([{**SFT, "enabled": False}], ["every stage is disabled"]),
        ([{**SFT, "epochs": 1}], ["steps or epochs, not both"]),
        ([{**SFT, "batch_size": 16, "micro_batch_size": 5}], ["not a multiple of micro_batch_size"]),
        ([{**SFT, "name": "Stage 1"}], ["lowercase"]),
        ([{**SFT, "trainable": {"lm": 0}}], ["at least 1"]),
        ([{**SFT, "trainable": {"experts": {"clip": -2}}}], ["trainable.experts.clip"]),
    ],
)
def test_invalid_stage_lists_say_what_to_fix(stages: list[dict], words: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        TrainSpec.model_validate({"stages": stages})
    for w in words:
        assert w in str(info.value)


def test_epochs_resolve_against_the_dataset_size() -> None:
    stage = StageSpec(name="sft", epochs=1.5, batch_size=16)
    assert stage.total_steps(100) == 9  # 6 batches per epoch (last partial dropped) x 1.5
    assert stage.with_steps(9).steps == 9 and stage.with_steps(9).epochs is None
    assert StageSpec(name="sft", epochs=1, batch_size=64).total_steps(10) == 1


def test_trainable_spec_settings_and_label() -> None:
    t = TrainableSpec(experts={"clip": "all", "sam": 2, "convnext": "spec"}, projector=True, lm=1)
    assert t.expert_setting("clip") == "all" and t.expert_setting("sam") == 2
    assert t.expert_setting("convnext") == "spec" and t.expert_setting("other") == "spec"
    assert t.label == "experts=clip=all,sam=last2 projector=True lm=last1"
    assert TrainableSpec(experts={"clip": "spec"}).experts == "spec"  # all-default mapping collapses


def test_caption_stage_on_llava_data_needs_the_caption_split(tmp_path: Path) -> None:
    data = {"source": "llava", "train": {"json_path": "t.json", "image_folder": "img"},
            "eval": {"b": {"kind": "llava", "path": "b.json"}}}
    with pytest.raises(ValidationError, match="data.caption is not set"):
        trial([ALIGN, SFT], data=data)
    ok = trial([ALIGN, SFT], data={**data, "caption": {"json_path": "c.json", "image_folder": "img"}})
    assert ok.data.caption is not None
    assert trial([SFT], data=data).data.caption is None  # no caption stage: not needed


def test_overrides_and_factors_address_stages_by_name() -> None:
    base = {"train": {"stages": [dict(PREALIGN), dict(ALIGN), dict(SFT)]}}
    merged = deep_merge(base, {"train": {"stages": {"sft": {"lr": 1e-4}, "prealign": {"enabled": False}}}})
    stages = {s["name"]: s for s in merged["train"]["stages"]}
    assert stages["sft"]["lr"] == 1e-4 and stages["prealign"]["enabled"] is False and "lr" not in stages["align"]
    set_path(merged, "train.stages.align.steps", 9)
    assert merged["train"]["stages"][1]["steps"] == 9
    with pytest.raises(ValueError, match="no item named 'warmup'"):
        set_path(merged, "train.stages.warmup.steps", 1)
    with pytest.raises(ValueError, match="no item named 'nope'"):
        deep_merge(base, {"train": {"stages": {"nope": {"lr": 1}}}})


def test_a_stage_list_in_the_overrides_names_what_it_drops_of_the_recipe(tmp_path: Path) -> None:
    recipe = {"train": {"stages": [{"name": "align", "steps": 2}, {"name": "sft", "steps": 3, "lr": 5e-4}]}}
    assert dropped_by_lists(recipe, {"train": {"stages": [{"name": "sft", "steps": 5}]}}) == [
        (("train", "stages"), ["align (whole item)", "sft.lr"])]
    assert dropped_by_lists(recipe, {"train": {"stages": {"sft": {"steps": 5}}}}) == []  # merged by name
    assert dropped_by_lists(recipe, {"train": {"stages": [{"name": "align", "steps": 1},
                                                          {"name": "sft", "steps": 5, "lr": 1e-4}]}}) == []

    (tmp_path / "r.yaml").write_text("name: r\nmodel: {grid: 4}\ntrain:\n  stages:\n    - {name: align, steps: 2}\n"
                                     "    - {name: sft, steps: 3, lr: 5.0e-4}\n")
    space = ("name: s\nrecipe: r.yaml\noverrides:\n  train:\n    stages:\n      - {name: sft, steps: 5}\n"
             "strategy: {kind: greedy, base: [clip], candidates: [sam]}\n")
    (tmp_path / "s.yaml").write_text(space)
    with pytest.warns(SpecWarning) as caught:
        load_search_space(tmp_path / "s.yaml")
    (message,) = [str(w.message) for w in caught]
    assert message.startswith(f"{tmp_path / 's.yaml'}:5: overrides.train.stages: this list replaces")
    assert "align (whole item), sft.lr" in message and "mapping by name" in message
    (tmp_path / "s.yaml").write_text(space.replace("      - {name: sft, steps: 5}", "      sft: {steps: 5}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SpecWarning)
        load_search_space(tmp_path / "s.yaml")


@pytest.mark.parametrize(("name", "label"), [("llava", "align>sft"), ("eagle_prealign", "prealign>align>sft"),
                                             ("tiny_llava", "align>sft"),
                                             ("tiny_eagle_prealign", "prealign>align>sft")])
def test_built_in_recipes_load(name: str, label: str) -> None:
    recipe, _ = load_recipe(ROOT / "experiments" / f"{name}.yaml")
    assert recipe.train.label == label
    assert recipe.name == name.replace("_", "-")


def test_search_space_names_a_built_in_recipe_and_toggles_prealignment(tmp_path: Path) -> None:
    (tmp_path / "experiments").mkdir()
    for name in ("tiny_eagle_prealign",):
        (tmp_path / "experiments" / f"{name}.yaml").write_text((ROOT / "experiments" / f"{name}.yaml").read_text())
    space = tmp_path / "s.yaml"
    space.write_text("""\
name: toggle
recipe: tiny-eagle-prealign
strategy:
  kind: grid
  factors:
    experts: [[clip]]
    train.stages.prealign.enabled: [true, false]
""")
    loaded = load_search_space(space, known_experts={"clip", "convnext", "sam"})
    on = loaded.factory.make(assignments={"experts": ["clip"], "train.stages.prealign.enabled": True})
    off = loaded.factory.make(assignments={"experts": ["clip"], "train.stages.prealign.enabled": False})
    assert on.train.label == "prealign>align>sft" and off.train.label == "align>sft"
    assert on.key != off.key
    space.write_text(space.read_text().replace("prealign.enabled", "prealing.enabled"))
    with pytest.raises(SpecError, match="no item named 'prealing'"):
        load_search_space(space, known_experts={"clip", "convnext", "sam"})


def test_flat_stage_error_points_at_the_line_the_user_wrote(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ntrain:\n  steps: 5\n  lr: -1\n")
    with pytest.raises(SpecError) as info:
        load_recipe(recipe)
    issue = info.value.issues[0]
    assert issue.field == "train.lr" and issue.line == 4
    recipe.write_text("name: r\ntrain:\n  stpes: 5\n")
    with pytest.raises(SpecError, match="unknown key 'stpes'.*steps"):
        load_recipe(recipe)
