"""Search-space and recipe validation: every error names file, line and field; keys are canonical."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from eaglesearch.spec import ExpertSpec, Recipe, SpecError, TrialFactory, load_search_space

KNOWN = {"clip", "convnext", "sam"}

RECIPE = """\
name: r
scale: tiny
model:
  grid: 4
train:
  steps: 3
"""


def write(tmp: Path, body: str, recipe: str = RECIPE) -> Path:
    (tmp / "experiments").mkdir(exist_ok=True)
    (tmp / "experiments" / "r.yaml").write_text(recipe)
    (tmp / "search_spaces").mkdir(exist_ok=True)
    path = tmp / "search_spaces" / "s.yaml"
    path.write_text(textwrap.dedent(body))
    return path


GREEDY = """\
name: s
recipe: experiments/r.yaml
strategy:
  kind: greedy
  base: [clip]
  candidates: [convnext, sam]
"""


def error_of(path: Path) -> SpecError:
    with pytest.raises(SpecError) as info:
        load_search_space(path, known_experts=KNOWN)
    return info.value


def test_valid_greedy_loads_and_resolves_recipe_relative_to_project(tmp_path: Path) -> None:
    loaded = load_search_space(write(tmp_path, GREEDY), known_experts=KNOWN)
    trial = loaded.factory.make(loaded.space.strategy.base_experts)
    assert trial.model.grid == 4 and trial.train.stages[0].steps == 3
    assert trial.model.experts[0].preset == "tiny"


@pytest.mark.parametrize(
    ("body", "field", "line", "words"),
    [
        (GREEDY.replace("kind: greedy", "kind: greed"), "strategy.kind", 4, ["greed", "grid", "greedy"]),
        (GREEDY.replace("[convnext, sam]", "[convnext, dino]"), "strategy.candidates[1]", 6, ["dino", "clip"]),
        (GREEDY.replace("experiments/r.yaml", "experiments/nope.yaml"), "recipe", 2, ["nope.yaml", "not found"]),
        (GREEDY + "resources:\n  cpus_per_trial: lots\n", "resources.cpus_per_trial", 8, ["number", "lots"]),
        (GREEDY + "colour: red\n", "colour", 7, ["unknown key", "strategy", "resources"]),
        (GREEDY.replace("[convnext, sam]", "[]"), "strategy.candidates", 6, ["at least 1"]),
        (GREEDY.replace("  base: [clip]\n", ""), "strategy.base", 3, ["required"]),
        (GREEDY.replace("[convnext, sam]", "[convnext, clip]"), "strategy", 3, ["already in base", "clip"]),
        (GREEDY.replace("kind: greedy", "kind: greedy\n  max_rounds: 0"), "strategy.max_rounds", 5, ["greater"]),
    ],
)
def test_malformed_search_space_names_field_and_line(
    tmp_path: Path, body: str, field: str, line: int, words: list[str]
) -> None:
    err = error_of(write(tmp_path, body))
    assert len(err.issues) == 1, str(err)
    issue = err.issues[0]
    assert issue.field == field, str(err)
    assert issue.line == line, str(err)
    assert issue.file is not None and issue.file.name == "s.yaml"
    for w in words:
        assert w in str(err), str(err)


def test_error_in_recipe_points_into_recipe_file(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, GREEDY, recipe=RECIPE + "  lr: fast\n"))
    assert err.issues[0].file.name == "r.yaml" and err.issues[0].line == 7
    assert err.issues[0].field == "train.lr"


def test_unknown_key_in_recipe_lists_allowed(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, GREEDY, recipe=RECIPE + "  stpes: 4\n"))
    assert "unknown key 'stpes'" in str(err) and "steps" in str(err)


def test_yaml_syntax_and_duplicate_keys(tmp_path: Path) -> None:
    err = error_of(write(tmp_path, GREEDY + "resources: [\n"))
    assert "not valid YAML" in str(err)
    err = error_of(write(tmp_path, GREEDY + "name: again\n"))
    assert "twice" in str(err) and err.issues[0].line == 7


def test_grid_exclude_and_bad_factor_value(tmp_path: Path) -> None:
    body = """\
    name: g
    recipe: experiments/r.yaml
    strategy:
      kind: grid
      factors:
        experts: [[clip], [clip, convnext]]
        train.lr: [0.001, 0.0005]
      exclude:
        - {experts: [clip], train.lr: 0.001}
    """
    loaded = load_search_space(write(tmp_path, body), known_experts=KNOWN)
    combos = list(loaded.space.strategy.combinations())
    assert len(combos) == 3
    err = error_of(write(tmp_path, body.replace("0.0005]", "-1]")))
    # train.lr is a shorthand for every stage's lr: the issue names the factor that set it, on its line
    assert err.issues[0].field == "strategy.factors.train.lr" and "greater than 0" in str(err)
    assert err.issues[0].line == 7 and len(err.issues) == 1
    err = error_of(write(tmp_path, body.replace("train.lr: 0.001}", "train.lrr: 0.001}")))
    assert "not factors" in str(err)


def test_trial_key_is_semantic() -> None:
    factory = TrialFactory(recipe=Recipe(name="r"))
    a = factory.make([ExpertSpec(name="clip")])
    b = factory.make([ExpertSpec(name="clip")], {"train.log_every": 99})
    c = factory.make([ExpertSpec(name="clip")], {"train.lr": 1e-3})
    assert a.key == b.key  # logging cadence is not part of the experiment
    assert a.key != c.key
    assert a.key == TrialFactory(recipe=Recipe(name="other-name")).make([ExpertSpec(name="clip")]).key


def test_repository_search_spaces_validate(repo: Path) -> None:
    from eaglesearch.model.validate import load_checked_search

    paths = sorted((repo / "search_spaces").glob("*.yaml"))
    assert len(paths) >= 9
    for path in paths:
        load_checked_search(path)
