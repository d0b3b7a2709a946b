"""Bring your own encoder: a declared factory becomes an expert family; EfficientNet-Lite0 with real weights."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import yaml

from eaglesearch.model.experts.custom import load_factory, register_custom_expert
from eaglesearch.spec.custom_expert import CustomExpertSpec
from examples import efficientnet_lite0 as lite0
from tests import custom_encoders
from tests.custom_encoders import declaration


@pytest.fixture(autouse=True)
def _restore_expert_registry():
    """Leave the process-wide expert registry, sys.path and PYTHONPATH as they were (other test files list the
    built-in families, and later Ray workers inherit this process's PYTHONPATH)."""
    import sys

    from eaglesearch.model.experts import custom, registry

    families, declared = dict(registry._FAMILIES), dict(custom._DECLARED)
    path, pythonpath = list(sys.path), os.environ.get("PYTHONPATH")
    yield
    registry._FAMILIES.clear()
    registry._FAMILIES.update(families)
    custom._DECLARED.clear()
    custom._DECLARED.update(declared)
    sys.path[:] = path
    if pythonpath is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = pythonpath


def test_every_package_weight_maps_onto_timm_by_shape_and_changes_the_network() -> None:
    import timm

    random = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    mapped = lite0.map_keys(lite0.package_state_dict(), random.state_dict())
    assert set(mapped) == set(random.state_dict()) and len(mapped) == 296
    pretrained = lite0.build_classifier(pretrained=True).eval()
    assert not torch.equal(pretrained.conv_stem.weight, random.conv_stem.weight)
    assert sum(p.numel() for p in pretrained.parameters()) == pytest.approx(4.65e6, rel=0.02)


def test_pretrained_features_are_1280x7x7_and_deterministic() -> None:
    encoder = lite0.build(pretrained=True).eval()
    torch.manual_seed(0)
    pixels = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        first, second = encoder(pixels), encoder(pixels)
    assert first.shape == (1, 1280, 7, 7) and torch.equal(first, second)
    assert bool((first >= 0).all()) and bool((first <= 6).all())  # after the head's ReLU6


def test_a_declared_expert_trains_beside_a_built_in_one() -> None:
    from eaglesearch.model import build_eagle, resolve_expert
    from eaglesearch.spec import ExpertSpec, ModelSpec
    from eaglesearch.trial.plan import Vocabulary

    family = register_custom_expert(CustomExpertSpec.model_validate(lite0.DECLARATION))
    assert register_custom_expert(CustomExpertSpec.model_validate(lite0.DECLARATION)) is family  # idempotent
    resolved = resolve_expert(ExpertSpec(name="effnet_lite0", resolution=128))
    assert resolved.pretrained is True and resolved.resolution == 128
    spec = ModelSpec.model_validate({"experts": [{"name": "clip"}, {"name": "effnet_lite0", "resolution": 128}],
                                     "grid": 4})
    model = build_eagle(spec, Vocabulary(400), seed=0)
    images = torch.randint(0, 256, (2, 3, 128, 128), dtype=torch.uint8)
    tokens = model.encode_images(images)
    assert tokens.shape == (2, 16, model.lm.config.hidden_size)
    tokens.sum().backward()
    assert model.experts["effnet_lite0"].encoder.net.conv_stem.weight.grad is not None


def test_a_wrong_factory_or_declaration_is_named() -> None:
    with pytest.raises(ValueError, match="cannot import module 'no_such_module'"):
        load_factory("no_such_module:build")
    with pytest.raises(ValueError, match="has no callable 'nothing'"):
        load_factory("examples.efficientnet_lite0:nothing")
    wrong = CustomExpertSpec.model_validate({**lite0.DECLARATION, "name": "effnet_wrong", "channels": 320})
    register_custom_expert(wrong)
    from eaglesearch.model.experts import build_expert
    from eaglesearch.spec import ExpertSpec

    expert = build_expert(ExpertSpec(name="effnet_wrong", pretrained=False, resolution=64))
    with pytest.raises(ValueError, match="declares"):
        expert(expert.preprocess(torch.zeros(1, 3, 64, 64, dtype=torch.uint8)))


# --- Declarations in YAML: registered before the name check, checked at validate time, carried by every trial ---

def _project(root: Path, experts: dict | None, strategy: dict, recipe_experts: dict | None = None) -> Path:
    from tests.e2e_helpers import tiny_recipe

    (root / "experiments").mkdir(parents=True, exist_ok=True)
    recipe = tiny_recipe()
    if recipe_experts:
        recipe += yaml.safe_dump({"experts": recipe_experts}, sort_keys=False)
    (root / "experiments" / "tiny_test.yaml").write_text(recipe)
    space: dict = {"name": "byoe", "recipe": "experiments/tiny_test.yaml"}
    if experts:
        space["experts"] = experts
    space["strategy"] = strategy
    path = root / "space.yaml"
    path.write_text(yaml.safe_dump(space, sort_keys=False))
    return path


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


GREEDY = {"kind": "greedy", "base": [{"name": "clip", "resolution": 64}], "candidates": ["patch16", "convnext"]}


def _all_proposals(strategy) -> list:
    """Everything a strategy asks for, telling each proposal a finished result so the next round opens."""
    from eaglesearch.spec import TrialResult

    seen = []
    while (p := strategy.ask()) is not None:
        seen.append(p)
        strategy.tell(p.key, TrialResult(key=p.key, status="finished", objective=0.1 * len(seen)))
    return seen


@pytest.mark.parametrize("strategy", [
    GREEDY,
    {"kind": "grid", "factors": {"experts": [[{"name": "clip", "resolution": 64}],
                                             [{"name": "clip", "resolution": 64}, "patch16"]],
                                 "model.fusion": ["channel_concat", "sequence_append"]}},
    {"kind": "optuna", "n_trials": 3, "seed": 0, "experts": {"base": [{"name": "clip", "resolution": 64}],
                                                           "pool": ["patch16", "convnext"], "min_size": 1}},
], ids=["greedy", "grid", "optuna"])
def test_a_declared_encoder_takes_part_in_every_strategy(tmp_path: Path, strategy: dict) -> None:
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.search import make_strategy

    path = _project(tmp_path, {"patch16": declaration()}, strategy)
    loaded = load_checked_search(path)
    proposals = _all_proposals(make_strategy(loaded))
    with_it = [p for p in proposals if "patch16" in [e.name for e in p.trial.model.experts]]
    assert with_it, [p.label for p in proposals]
    for p in with_it:
        expert = next(e for e in p.trial.model.experts if e.name == "patch16")
        assert expert.custom == CustomExpertSpec.model_validate({"name": "patch16", **declaration()})
        assert expert.resolution == 64 and expert.pretrained is True
        assert "tests.custom_encoders:patch16" in p.trial.canonical_json()
    without = [p for p in proposals if p not in with_it]
    assert all('"custom"' not in p.trial.canonical_json() for p in without)


def test_the_declaration_is_part_of_the_key_and_survives_a_round_trip(tmp_path: Path) -> None:
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.spec import ExpertSpec, TrialSpec

    first = load_checked_search(_project(tmp_path / "a", {"patch16": declaration()}, GREEDY))
    other = load_checked_search(_project(tmp_path / "b", {"patch16": declaration(
        "tests.custom_encoders:patch32", channels=32, stride=16)}, GREEDY))
    experts = [ExpertSpec(name="clip", resolution=64), ExpertSpec(name="patch16")]
    a, b = first.factory.make(experts), other.factory.make(experts)
    assert a.label == b.label and a.key != b.key  # one name, two encoders: never one cached result
    assert TrialSpec.model_validate_json(a.model_dump_json()).key == a.key
    params = a.flat_params()
    assert params["model.expert.patch16.custom.factory"] == "tests.custom_encoders:patch16"
    assert params["model.expert.patch16.custom.channels"] == "16" and params["model.expert.patch16.pretrained"] == "True"
    # Declaring encoders changes nothing for a search that uses only built-in ones (their keys stay the same).
    built_in = [ExpertSpec(name="clip", resolution=64)]
    assert first.factory.make(built_in).key == load_checked_search(
        _project(tmp_path / "c", None, GREEDY | {"candidates": ["convnext"]})).factory.make(built_in).key


def _spec_error(path: Path):
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.spec import SpecError

    with pytest.raises(SpecError) as info:
        load_checked_search(path)
    return info.value


def test_wrong_channels_or_stride_are_reported_at_their_line(tmp_path: Path) -> None:
    path = _project(tmp_path, {"patch_a": declaration(channels=24)}, GREEDY | {"candidates": ["patch_a"]})
    err = _spec_error(path)
    assert [i.field for i in err.issues] == ["experts.patch_a.channels"]
    assert err.issues[0].line == _line_of(path, "channels: 24") and err.issues[0].file == path
    assert "set channels: 16" in str(err)
    path = _project(tmp_path, {"patch_b": declaration(stride=16)}, GREEDY | {"candidates": ["patch_b"]})
    err = _spec_error(path)
    assert [i.field for i in err.issues] == ["experts.patch_b.stride"] and "set stride: 8" in str(err)
    assert err.issues[0].line == _line_of(path, "stride: 16")


def test_an_unimportable_or_failing_factory_is_reported_at_its_line(tmp_path: Path) -> None:
    path = _project(tmp_path, {"gone": declaration("no_such_encoders.nets:build")}, GREEDY | {"candidates": ["gone"]})
    err = _spec_error(path)
    assert [i.field for i in err.issues] == ["experts.gone.factory"]
    assert err.issues[0].line == _line_of(path, "no_such_encoders") and "cannot import module" in str(err)
    path = _project(tmp_path, {"bad": declaration("tests.custom_encoders:broken")}, GREEDY | {"candidates": ["bad"]})
    err = _spec_error(path)
    assert err.issues[0].field == "experts.bad.factory" and "weights file missing" in str(err)
    assert "Traceback" not in str(err)


def test_a_declaration_may_not_take_a_built_in_name_or_differ_between_recipe_and_space(tmp_path: Path) -> None:
    path = _project(tmp_path, {"clip": declaration()}, GREEDY | {"candidates": ["convnext"]})
    assert "name of a built-in expert" in str(_spec_error(path))
    path = _project(tmp_path, {"patch_c": declaration()}, GREEDY | {"candidates": ["patch_c"]},
                    recipe_experts={"patch_c": declaration(channels=32)})
    err = _spec_error(path)
    assert err.issues[0].field == "experts.patch_c" and "declared, differently, in the recipe" in str(err)


def test_a_recipe_declaration_serves_the_search_space(tmp_path: Path) -> None:
    from eaglesearch.model.validate import load_checked_search

    path = _project(tmp_path, None, GREEDY | {"candidates": ["patch_d"]}, recipe_experts={"patch_d": declaration()})
    loaded = load_checked_search(path)
    trial = loaded.factory.make([*loaded.space.strategy.base_experts, *loaded.space.strategy.candidate_experts])
    assert trial.model.experts[1].custom is not None and trial.model.experts[1].custom.name == "patch_d"


def test_a_fresh_worker_re_registers_the_trial_declaration(tmp_path: Path) -> None:
    """A Ray worker knows only the built-in families: it registers what the trial carries, then builds."""
    from eaglesearch.model.experts import build_expert, expert_names
    from eaglesearch.model.experts.discovery import register_trial_experts
    from eaglesearch.model.experts.registry import unregister_expert
    from eaglesearch.model.validate import load_checked_search

    loaded = load_checked_search(_project(tmp_path, {"patch_w": declaration()}, GREEDY | {"candidates": ["patch_w"]}))
    trial = loaded.factory.make([*loaded.space.strategy.base_experts, *loaded.space.strategy.candidate_experts])
    unregister_expert("patch_w")
    assert "patch_w" not in expert_names()
    register_trial_experts(trial.model.experts)
    expert = build_expert(trial.model.experts[1])
    assert torch.equal(expert.encoder.weight, custom_encoders.patch16(pretrained=True).weight)  # pretrained
    # A different declaration under the same name (another search in this process) replaces it for its trial.
    changed = trial.model.experts[1].custom.model_copy(update={"factory": "tests.custom_encoders:patch32",
                                                               "channels": 32, "stride": 16})
    register_trial_experts([trial.model.experts[1].model_copy(update={"custom": changed})])
    assert build_expert(trial.model.experts[1]).channels == 32


def test_a_factory_module_beside_the_yaml_is_found_and_exported_to_workers(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from eaglesearch.model.experts.custom import load_factory

    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    (tmp_path / "byoe_local_encoders.py").write_text("from tests.custom_encoders import patch16 as build\n")
    with pytest.raises(ValueError, match="cannot import module 'byoe_local_encoders'"):
        load_factory("byoe_local_encoders:build")
    assert load_factory("byoe_local_encoders:build", roots=[tmp_path / "nowhere", tmp_path]) is \
        custom_encoders.patch16
    assert str(tmp_path) in sys.path and os.environ["PYTHONPATH"] == str(tmp_path)


# --- Entry points: installed packages declare encoders under the group eaglesearch.experts ---

def _install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, entries: str) -> None:
    """A package 'byoe-plugin' as pip would leave it: a module and a dist-info with entry_points.txt."""
    (root / "byoe_plugin.py").write_text(textwrap.dedent("""\
        from eaglesearch.model.experts.custom import register_custom_expert
        from eaglesearch.spec.custom_expert import CustomExpertSpec
        from tests.custom_encoders import declaration

        DECLARATION = declaration()

        def register():
            register_custom_expert(CustomExpertSpec.model_validate({"name": "plug_fn", **declaration(
                "tests.custom_encoders:patch32", channels=32, stride=16)}))

        NOT_A_DECLARATION = 42
        """))
    info = root / "byoe_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: byoe-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[eaglesearch.experts]\n{entries}")
    monkeypatch.syspath_prepend(str(root))
    from eaglesearch.model.experts import discovery

    monkeypatch.setattr(discovery, "_discovered", False)


def test_entry_points_register_declarations_and_registration_functions(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from eaglesearch.model.experts import expert_names
    from eaglesearch.model.experts.discovery import discover_experts
    from eaglesearch.model.validate import load_checked_search

    _install_plugin(tmp_path, monkeypatch, "plug_decl = byoe_plugin:DECLARATION\nplug_reg = byoe_plugin:register\n")
    assert discover_experts(check=True) == ["plug_decl"]  # the function registered plug_fn itself
    assert {"plug_decl", "plug_fn"} <= set(expert_names())
    assert discover_experts() == []  # once per process
    path = _project(tmp_path / "p", None, GREEDY | {"candidates": ["plug_decl", "plug_fn"]})
    loaded = load_checked_search(path)
    trial = loaded.factory.make([*loaded.space.strategy.base_experts, *loaded.space.strategy.candidate_experts])
    assert [e.custom.factory for e in trial.model.experts[1:]] == ["tests.custom_encoders:patch16",
                                                                   "tests.custom_encoders:patch32"]


def test_a_broken_entry_point_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _install_plugin(tmp_path, monkeypatch, "plug_bad = byoe_plugin:NOT_A_DECLARATION\n")
    err = _spec_error(_project(tmp_path / "p", None, GREEDY | {"candidates": ["convnext"]}))
    assert err.issues[0].field == "entry point plug_bad (eaglesearch.experts)"
    assert "byoe-plugin" in str(err) and "gives a int" in str(err)


# --- End to end: a real search through the CLI with EfficientNet-Lite0 beside a built-in expert ---

PROBE = '''\
"""EfficientNet-Lite0 as the search builds it, noting what its stem weights were (for the test to compare)."""
import json
from pathlib import Path

from examples.efficientnet_lite0 import build as lite0_build


def build(pretrained: bool = True):
    encoder = lite0_build(pretrained)
    stem = encoder.net.conv_stem.weight.detach().double()
    if stem.is_meta:  # validation sizes models on the meta device: nothing to record
        return encoder
    with open(Path(__file__).with_name("builds.jsonl"), "a") as fh:
        fh.write(json.dumps({"pretrained": pretrained, "stem_sum": float(stem.sum()),
                             "stem_abs": float(stem.abs().sum())}) + "\\n")
    return encoder
'''


@pytest.mark.slow
def test_a_search_with_efficientnet_lite0_beside_clip_runs_end_to_end(tmp_path: Path) -> None:
    """``eaglesearch run --executor inline`` trains and evaluates clip+EfficientNet-Lite0 (ImageNet weights) in a
    temp project whose encoder modules sit beside the search space, as a user's would."""
    import shutil

    import timm

    from eaglesearch.tracking import TrackingStore
    from tests.e2e_helpers import cli, make_project

    declared = {k: v for k, v in lite0.DECLARATION.items() if k != "name"}
    space = {"name": "byoe-e2e", "recipe": "experiments/tiny_test.yaml",
             "experts": {"effnet": {**declared, "factory": "byoe_probe:build", "mean": list(lite0.MEAN),
                                    "std": list(lite0.STD)}},
             "strategy": {"kind": "grid", "factors": {"experts": [[{"name": "clip", "resolution": 64},
                                                                    {"name": "effnet", "resolution": 64}]]}},
             "resources": {"cpus_per_trial": 1}}
    root = make_project(tmp_path, {"byoe": yaml.safe_dump(space, sort_keys=False)})
    (root / "examples").mkdir()
    shutil.copy(Path(lite0.__file__), root / "examples" / "efficientnet_lite0.py")
    (root / "examples" / "__init__.py").write_text("")
    (root / "byoe_probe.py").write_text(PROBE)

    wrong = {**space, "experts": {"effnet": {**space["experts"]["effnet"], "channels": 320}}}
    (root / "search_spaces" / "wrong.yaml").write_text(yaml.safe_dump(wrong, sort_keys=False))
    proc = cli(root, "validate", "search_spaces/wrong.yaml")
    line = _line_of(root / "search_spaces" / "wrong.yaml", "channels: 320")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    message = " ".join(proc.stderr.split())  # rich wraps long lines at spaces
    assert f"search_spaces/wrong.yaml:{line}: experts.effnet.channels:" in message and "set channels: 1280" in message

    proc = cli(root, "run", "search_spaces/byoe.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr

    store = TrackingStore(f"sqlite:///{root}/mlflow.db")
    runs = store.trial_runs(store.latest_parent("byoe-e2e"))
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["status"] == "FINISHED" and run["status_tag"] == "finished"
    assert run["label"] == "clip@64+effnet@64" and run["objective"] == run["objective"]  # a number, not NaN
    assert run["param.model.expert.effnet.custom.factory"] == "byoe_probe:build"
    assert run["param.model.expert.effnet.pretrained"] == "True"

    # The encoder the trial built carried the package's ImageNet stem, not a random init's.
    builds = [json.loads(line) for line in (root / "builds.jsonl").read_text().splitlines()]
    trained = [b for b in builds if b["pretrained"]]
    assert trained and len(trained) < len(builds)  # loading the space ran the encoder once, at random init
    reference = lite0.build(pretrained=True).net.conv_stem.weight.detach().double()
    random_stem = timm.create_model("tf_efficientnet_lite0").conv_stem.weight.detach().double()
    for b in trained:
        assert b["stem_sum"] == pytest.approx(float(reference.sum()), rel=1e-9)
        assert b["stem_abs"] == pytest.approx(float(reference.abs().sum()), rel=1e-9)
        assert b["stem_abs"] != pytest.approx(float(random_stem.abs().sum()), rel=1e-3)
