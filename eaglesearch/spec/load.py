"""Load a search space and its recipe, validate every trial it can produce, and build TrialSpecs.

Nothing starts on an invalid file: :func:`load_search_space` raises :class:`SpecError` naming the file, the
line, the field and what is allowed, for the search space and for the recipe it references.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from eaglesearch.spec.custom_expert import CustomExpertSpec
from eaglesearch.spec.errors import SpecError, SpecIssue
from eaglesearch.spec.keys import content_key
from eaglesearch.spec.metric_names import check_metric_names
from eaglesearch.spec.model import ExpertSpec
from eaglesearch.spec.optuna_space import OptunaStrategySpec
from eaglesearch.spec.provenance import TrialSources
from eaglesearch.spec.pydantic_errors import issues_from_validation
from eaglesearch.spec.recipe import Recipe
from eaglesearch.spec.search_space import GreedyStrategySpec, GridStrategySpec, SearchSpace, as_expert
from eaglesearch.spec.trial import TrialSpec
from eaglesearch.spec.yaml_source import Loc, YamlDocument, format_loc, read_yaml

ExpertResolver = Callable[[ExpertSpec], ExpertSpec]
TrialValidator = Callable[[TrialSpec], None]
ExpertDeclarer = Callable[[CustomExpertSpec, Sequence[Path]], None]
"""Registers a declared encoder (given the folders its factory module may live in); ``ValueError`` (with a
``field`` attribute naming the declaration field, when it knows one) if the declaration cannot work."""
EXPERTS_FACTOR = "experts"


def _named(items: Any) -> dict[str, dict[str, Any]] | None:
    """``{name: item}`` when ``items`` is a list of mappings that each have a unique ``name`` (e.g. training stages)."""
    if not isinstance(items, list) or not all(isinstance(i, Mapping) and isinstance(i.get("name"), str) for i in items):
        return None
    by_name = {i["name"]: i for i in items}
    return by_name if len(by_name) == len(items) else None


class MergeError(ValueError):
    """``overrides`` name a list item that does not exist; ``loc`` is where, inside the overrides."""

    def __init__(self, message: str, loc: Loc) -> None:
        super().__init__(message)
        self.loc = loc


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any], _at: Loc = ()) -> dict[str, Any]:
    """``extra`` merged into a copy of ``base``; nested mappings merge, everything else replaces.

    A mapping merged into a list of named mappings (``train.stages``) merges into the items by name:
    ``{stages: {sft: {lr: 1e-4}}}`` changes the ``sft`` stage's lr. Unknown names are errors (:class:`MergeError`).
    """
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        named = _named(out.get(k))
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v, (*_at, k))
        elif isinstance(v, Mapping) and named is not None:
            unknown = sorted(set(v) - set(named))
            if unknown:
                raise MergeError(f"'{k}' has no item named {', '.join(map(repr, unknown))}; "
                                 f"names: {', '.join(named)}", (*_at, k, unknown[0]))
            out[k] = [deep_merge(item, v[item["name"]], (*_at, k, item["name"])) if item["name"] in v else item
                      for item in out[k]]
        else:
            out[k] = copy.deepcopy(v)
    return out


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``a.b.c``; in a list of named mappings a segment picks the item by name
    (``train.stages.prealign.enabled``)."""
    parts = dotted.split(".")
    node: Any = data
    for p in parts[:-1]:
        named = _named(node)
        if named is not None:
            if p not in named:
                raise ValueError(f"'{dotted}': no item named '{p}'; names: {', '.join(named)}")
            node = named[p]
            continue
        if not isinstance(node, dict):
            raise ValueError(f"'{dotted}' goes through '{p}', which is not a mapping")
        node = node.setdefault(p, {})
    named = _named(node)
    if named is not None:
        raise ValueError(f"'{dotted}' ends at a whole item of a list; set one of its fields instead")
    if not isinstance(node, dict):
        raise ValueError(f"'{dotted}' goes through a value that is not a mapping")
    node[parts[-1]] = copy.deepcopy(value)


def load_recipe(path: Path) -> tuple[Recipe, YamlDocument]:
    doc = read_yaml(path)
    try:
        return Recipe.model_validate(doc.data), doc
    except ValidationError as err:
        raise SpecError(issues_from_validation(err, Recipe, doc)) from None


@dataclass(frozen=True)
class TrialFactory:
    """Builds TrialSpecs from the recipe, the search space's overrides and what a strategy varies."""

    recipe: Recipe
    overrides: Mapping[str, Any] = field(default_factory=dict)
    expert_resolver: ExpertResolver | None = None
    trial_validator: TrialValidator | None = None  # raises ValueError for combinations the model can't build
    declarations: Mapping[str, CustomExpertSpec] = field(default_factory=dict)  # the experts: sections, merged

    def base_dict(self) -> dict[str, Any]:
        data = self.recipe.model_dump(mode="json", exclude={"name", "description", "scale", "experts"})
        return deep_merge(data, self.overrides)

    def make(self, experts: Sequence[ExpertSpec] | None = None, assignments: Mapping[str, Any] | None = None) -> TrialSpec:
        """A TrialSpec; raises ``pydantic.ValidationError`` (loc relative to the trial) or ``ValueError``."""
        data = self.base_dict()
        for path, value in (assignments or {}).items():
            if path == EXPERTS_FACTOR:
                experts = [as_expert(ExpertSpec.model_validate(v) if isinstance(v, dict) else v) for v in value]
            else:
                set_path(data, path, value)
        if experts is not None:
            data["model"]["experts"] = [e.model_dump(mode="json") for e in experts]
        trial = TrialSpec.model_validate(data)
        resolved = tuple(self._resolve(e) for e in trial.model.experts)
        trial = trial.model_copy(update={"model": trial.model.model_copy(update={"experts": resolved})})
        if self.trial_validator is not None:
            self.trial_validator(trial)
        return trial

    def _resolve(self, expert: ExpertSpec) -> ExpertSpec:
        if expert.preset is None:
            expert = expert.model_copy(update={"preset": self.recipe.scale})
        if expert.custom is None and expert.name in self.declarations:
            expert = expert.model_copy(update={"custom": self.declarations[expert.name]})
        return self.expert_resolver(expert) if self.expert_resolver else expert


@dataclass(frozen=True)
class LoadedSearch:
    """A validated search space with its recipe and a factory for its trials."""

    path: Path
    space: SearchSpace
    recipe_path: Path
    recipe: Recipe
    factory: TrialFactory
    doc: YamlDocument

    @property
    def name(self) -> str:
        return self.space.name

    @property
    def fingerprint(self) -> str:
        """Changes whenever the search space or its recipe changes semantically."""
        return content_key({"space": self.space.model_dump(mode="json"), "recipe": self.recipe.model_dump(mode="json")},
                           12, spaced=True)


def _resolve_recipe_path(space_path: Path, ref: str) -> tuple[Path | None, list[Path]]:
    """A recipe path (relative to the space's folder, its parent or the working directory), or a recipe name such as
    ``tiny-eagle-prealign``: ``experiments/tiny_eagle_prealign.yaml`` in those places."""
    p = Path(ref)
    if p.suffix not in (".yaml", ".yml") and len(p.parts) == 1:
        p = Path("experiments") / f"{ref.replace('-', '_')}.yaml"
    tried = [p] if p.is_absolute() else [space_path.parent / p, space_path.parent.parent / p, Path.cwd() / p]
    for cand in tried:
        if cand.is_file():
            return cand.resolve(), tried
    return None, tried


def grid_combinations(strategy: GridStrategySpec) -> Iterator[dict[str, Any]]:
    """Every factor assignment of the full factorial, in declaration order, minus excluded ones."""
    names = list(strategy.factors)
    for values in itertools.product(*(strategy.factors[n] for n in names)):
        combo = dict(zip(names, values, strict=True))
        if any(all(combo[k] == v for k, v in rule.items()) for rule in strategy.exclude):
            continue
        yield combo


def load_search_space(
    path: str | Path,
    known_experts: Collection[str] | None = None,
    expert_resolver: ExpertResolver | None = None,
    trial_validator: TrialValidator | None = None,
    declare_expert: ExpertDeclarer | None = None,
) -> LoadedSearch:
    """Parse and fully validate a search space. ``known_experts`` are the registry's names, if checked;
    ``expert_resolver`` fills preset defaults; ``trial_validator`` rejects combinations the model can't build;
    ``declare_expert`` registers the ``experts:`` declarations (before the expert names are checked)."""
    path = Path(path)
    doc = read_yaml(path)
    try:
        space = SearchSpace.model_validate(doc.data)
    except ValidationError as err:
        raise SpecError(issues_from_validation(err, SearchSpace, doc)) from None

    recipe_path, tried = _resolve_recipe_path(path, space.recipe)
    if recipe_path is None:
        raise SpecError.single(
            "recipe", f"recipe '{space.recipe}' not found; looked in: {', '.join(str(t) for t in tried)}",
            file=path, line=doc.line_of(("recipe",)),
        )
    recipe, recipe_doc = load_recipe(recipe_path)

    declarations, issues = _declarations(space, doc, recipe, recipe_doc)
    if declare_expert is not None and not issues:
        issues += _declare(declarations, declare_expert, doc, recipe_doc)
    if known_experts is not None and not issues:
        issues += _unknown_experts(doc, recipe_doc, {*known_experts, *declarations})
    if issues:
        raise SpecError(issues)

    factory = TrialFactory(recipe=recipe, overrides=space.overrides, expert_resolver=expert_resolver,
                           trial_validator=trial_validator, declarations=declarations)
    loaded = LoadedSearch(path=path, space=space, recipe_path=recipe_path, recipe=recipe, factory=factory, doc=doc)
    _check_trials(loaded, recipe_doc)
    return loaded


def _declarations(space: SearchSpace, doc: YamlDocument, recipe: Recipe,
                  recipe_doc: YamlDocument) -> tuple[dict[str, CustomExpertSpec], list[SpecIssue]]:
    """The recipe's and the search space's ``experts:`` merged; one name declared differently in both is an error."""
    merged = dict(recipe.experts)
    issues = []
    for name, declared in space.experts.items():
        if name in merged and merged[name] != declared:
            issues.append(SpecIssue(
                field=format_loc(("experts", name)), file=doc.path, line=doc.line_of(("experts", name)),
                message=f"'{name}' is also declared, differently, in the recipe {recipe_doc.path} (line "
                f"{recipe_doc.line_of(('experts', name))}); keep one declaration or rename one of them"))
        merged[name] = declared
    return merged, issues


def _declare(declarations: Mapping[str, CustomExpertSpec], declare: ExpertDeclarer, doc: YamlDocument,
             recipe_doc: YamlDocument) -> list[SpecIssue]:
    """Register every declaration; each one that fails is an issue at its own field's line."""
    issues = []
    for name, declared in declarations.items():
        source = doc if name in doc.data.get("experts", {}) else recipe_doc
        roots = [source.path.resolve().parent, source.path.resolve().parent.parent, Path.cwd()]
        try:
            declare(declared, roots)
        except ValueError as err:
            field_name = getattr(err, "field", None)
            loc: Loc = ("experts", name, field_name) if field_name else ("experts", name)
            issues.append(SpecIssue(field=format_loc(loc), message=str(err), file=source.path,
                                    line=source.line_of(loc)))
    return issues


def _expert_refs(doc: YamlDocument, prefix: Loc) -> Iterator[tuple[Loc, str]]:
    node: Any = doc.data
    for p in prefix:
        if isinstance(node, dict) and p in node:
            node = node[p]
        else:
            return
    if not isinstance(node, list):
        return
    for i, ref in enumerate(node):
        name = ref.get("name") if isinstance(ref, dict) else ref
        if isinstance(name, str):
            yield prefix + (i,), name


def _unknown_experts(doc: YamlDocument, recipe_doc: YamlDocument, known: Collection[str]) -> list[SpecIssue]:
    places: list[tuple[YamlDocument, Loc, str]] = []
    for prefix in [("strategy", "base"), ("strategy", "candidates"), ("overrides", "model", "experts")]:
        places += [(doc, loc, name) for loc, name in _expert_refs(doc, prefix)]
    factors = doc.data.get("strategy", {}).get("factors", {})
    for j, _ in enumerate(factors.get(EXPERTS_FACTOR, []) if isinstance(factors, dict) else []):
        places += [(doc, loc, n) for loc, n in _expert_refs(doc, ("strategy", "factors", EXPERTS_FACTOR, j))]
    places += [(recipe_doc, loc, name) for loc, name in _expert_refs(recipe_doc, ("model", "experts"))]
    allowed = ", ".join(sorted(known))
    return [
        SpecIssue(
            field=format_loc(loc),
            message=f"unknown expert '{name}'; registered experts: {allowed}",
            file=d.path,
            line=d.line_of(loc),
        )
        for d, loc, name in places
        if name not in known
    ]


def _check_trials(loaded: LoadedSearch, recipe_doc: YamlDocument) -> None:
    """Build every trial the strategy can reach (grid) or its first-round ones (greedy) to surface errors now, each
    reported where it was written (:mod:`~eaglesearch.spec.provenance`); then check the metric names."""
    strategy = loaded.space.strategy
    doc = loaded.doc
    try:
        base = loaded.factory.base_dict()
    except MergeError as err:
        where = ("overrides", *err.loc)
        raise SpecError.single(format_loc(where), str(err), file=doc.path, line=doc.line_of(where)) from None
    sources = TrialSources(space=doc, recipe=recipe_doc, overrides=loaded.space.overrides, base=base)
    trials: list[TrialSpec] = []

    def attempt(build: Callable[[], TrialSpec], where: Loc, combo: Mapping[str, Any] | None = None) -> None:
        """``combo``: the grid factor values the trial was built from, to name the factor that set a bad field."""
        try:
            trials.append(build())
        except ValidationError as err:
            issues = issues_from_validation(err, TrialSpec, None,
                                            place=lambda loc: sources.place(loc, combo or {}, where))
            raise SpecError([
                SpecIssue(field=i.field, message=f"{i.message} (in the trial built from this entry)", file=i.file,
                          line=i.line) if i.field.startswith("strategy") else i
                for i in issues
            ]) from None
        except ValueError as err:
            raise SpecError.single(format_loc(where), str(err), file=doc.path, line=doc.line_of(where)) from None

    if isinstance(strategy, GreedyStrategySpec):
        base = strategy.base_experts
        attempt(lambda: loaded.factory.make(base), ("strategy", "base"))
        for i, cand in enumerate(strategy.candidate_experts):
            attempt(lambda c=cand: loaded.factory.make((*base, c)), ("strategy", "candidates", i))
    elif isinstance(strategy, OptunaStrategySpec):
        _check_optuna(loaded, strategy, attempt)
    else:
        combos = list(grid_combinations(strategy))
        if not combos:
            raise SpecError.single("strategy.exclude", "every grid combination is excluded; nothing would run",
                                   file=doc.path, line=doc.line_of(("strategy", "exclude")))
        for combo in combos:
            where: Loc = ("strategy", "factors", next(iter(combo)))
            attempt(lambda c=combo: loaded.factory.make(assignments=c), where, combo)
        if strategy.baseline is not None and strategy.baseline not in [
            {k: c[k] for k in strategy.baseline} for c in combos
        ]:
            raise SpecError.single("strategy.baseline", "baseline matches no grid combination",
                                   file=doc.path, line=doc.line_of(("strategy", "baseline")))
    issues = check_metric_names(trials, sources, strategy.objective)
    if issues:
        raise SpecError(issues)


def _check_optuna(loaded: LoadedSearch, strategy: OptunaStrategySpec,
                  attempt: Callable[[Callable[[], TrialSpec], Loc], None]) -> None:
    """Build the corner trials of an Optuna space (each choice and range end, one at a time) to surface a bad
    path or value now; combinations of valid corners that still fail are skipped by the search at run time."""
    doc = loaded.doc
    points = strategy.corner_points()
    if not points:
        raise SpecError.single("strategy.exclude", "every corner of the Optuna space is excluded; check exclude "
                               "and experts.min_size/max_size", file=doc.path, line=doc.line_of(("strategy",)))
    recipe_experts = loaded.factory.base_dict()["model"]["experts"]
    for point in points:
        changed = [p for p in point if point[p] != points[0].get(p)] or list(point)
        where: Loc = ("strategy", "experts") if changed[0] == EXPERTS_FACTOR else ("strategy", "params", changed[0])
        attempt(lambda pt=point: loaded.factory.make(assignments=strategy.assignments(pt, recipe_experts)), where)
