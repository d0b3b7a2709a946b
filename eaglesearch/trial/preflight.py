"""Checks that need the model layer or the filesystem, run by ``validate``, ``plan`` and ``run`` before anything
starts. ``spec/`` has already checked everything a file can say about itself; this module checks what the files
imply on this machine:

* **Token budget.** A sample is its visual tokens plus its text, and nothing is ever truncated (the data layer
  rejects or skips a longer sample). Sequence append adds the experts' tokens and a tiled expert has
  ``(1 + tiles²)·grid²`` of them, and under ``data.image: dynamic`` a picture is up to ``max_tiles`` (+1 thumbnail)
  square images, each with the model's visual tokens: the budget is checked for that worst case (the data layer
  checks each sample against it too, so a trial that passes here never meets a sample it must reject for its
  tiles). So a trial can need more than ``data.max_length`` before any text. For every trial
  the strategy can produce (its class's ``reachable``: grid, all of them; greedy, the base plus every set of
  candidates it can add, up to ``max_rounds``; Optuna, the space's corners), the visual token count comes from the
  fusion's declaration (``fusions/catalog.py``), or, for a fusion with constraints only built experts show, from the
  model built on the ``meta`` device (the fusion's
  ``num_tokens``; nothing is allocated or downloaded), and the text from the shortest conversation the recipe's
  template can render: one special token per marker and at least one token per other piece of text (one-character
  answer, empty question). That is a lower bound for every tokenizer eaglesearch loads, so a trial reported here
  cannot train; real prompts are longer, so the fix names the bound as a minimum.
* **Sources and paths.** Every training source is checked by its own format (``data/sources``): a registered
  format, a path when it needs one, that the path exists here (relative paths are read from the working
  directory, as the trial reads them), and what the format needs inside (a table's columns); benchmark files
  must exist too. Paths that only exist on cluster nodes are skipped with ``check_paths=False``
  (``--no-check-paths`` on the command line); what a spec must say (a path at all, a known format) is not.

Every problem is a :class:`~eaglesearch.spec.SpecError` issue that names the file and field to change.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from eaglesearch.data.sources import SourceContext, build_source
from eaglesearch.data.templates import get_template
from eaglesearch.model.experts import resolve_expert
from eaglesearch.model.fusions.catalog import fusion_kind, visual_tokens
from eaglesearch.model.special_tokens import IM_END, IMAGE_TOKEN, SPECIAL_TOKENS
from eaglesearch.spec import ExpertSpec, LoadedSearch, ModelSpec, SpecError, SpecIssue, TrialSpec
from eaglesearch.spec.provenance import TrialSources
from eaglesearch.spec.yaml_source import Loc, YamlDocument, format_loc, read_yaml
from eaglesearch.trial.project import benchmark_paths

if TYPE_CHECKING:
    from torch import nn

_SPECIAL = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS if t != IMAGE_TOKEN))


class Candidate(Protocol):
    """A trial the strategy can produce, and the strategy entry it comes from (``search.Candidate``)."""

    trial: TrialSpec
    entry: Loc


class VisualTokens:
    """Visual tokens per image of a model spec: from the fusion's declaration (``fusions/catalog.py``, no torch), or
    for a fusion that ``needs_built_experts`` from the fusion built on ``meta`` (experts cached by spec), which also
    raises what only built experts show (e.g. ``fusion_heads`` not dividing a width)."""

    def __init__(self) -> None:
        self._experts: dict[str, nn.Module] = {}
        self._counts: dict[str, int] = {}

    def _expert(self, spec: ExpertSpec) -> nn.Module:
        from eaglesearch.model.experts import build_expert
        from eaglesearch.model.meta import skeleton

        spec = resolve_expert(spec).model_copy(update={"pretrained": False, "checkpoint": None})
        key = spec.model_dump_json()
        if key not in self._experts:
            with skeleton():
                self._experts[key] = build_expert(spec)
        return self._experts[key]

    def _built(self, spec: ModelSpec) -> int:
        from eaglesearch.model.fusions import build_fusion
        from eaglesearch.model.meta import skeleton

        experts = [self._expert(e) for e in spec.experts]
        with skeleton():
            fusion = build_fusion(spec, experts, spec.lm.hidden_size)
        return int(fusion.num_tokens)

    def __call__(self, spec: ModelSpec) -> int:
        key = json.dumps({k: v for k, v in spec.model_dump(mode="json").items() if k not in ("lm", "tokenizer")},
                         sort_keys=True)
        if key not in self._counts:
            self._counts[key] = self._built(spec) if fusion_kind(spec.fusion).needs_built_experts else \
                visual_tokens(spec)
        return self._counts[key]


def min_text_tokens(template: str) -> int:
    """Fewest text tokens any image sample can have with ``template``: the shortest conversation (empty question,
    one-character answer), one token per special marker and at least one per other piece of text. Segments are
    tokenised separately (``data/conversation.py``), so pieces of different segments never share a token."""
    turns = [("user", IMAGE_TOKEN), ("assistant", "a")]
    count = 0
    for text, _ in get_template(template).segments(turns, eos=IM_END):
        for piece in text.split(IMAGE_TOKEN):
            count += len(_SPECIAL.findall(piece)) + sum(1 for p in _SPECIAL.split(piece) if p)
    return count


def _describe(trial: TrialSpec, visual: int) -> str:
    model = trial.model
    tiled = [e.label for e in model.experts if e.resize == "tile"]
    why = f"fusion {model.fusion}, grid {model.grid}" + (f", tiled {', '.join(tiled)}" if tiled else "")
    policy = trial.data.image
    if policy.max_images > 1:
        why += f", up to {policy.max_images} images per picture (data.image: {policy.label})"
    return f"'{trial.label}' ({visual} visual tokens: {why})"


def check_token_budget(candidates: list[Candidate], sources: TrialSources) -> list[SpecIssue]:
    """One issue per ``data.max_length`` that some candidate trials cannot fit, naming them and the fix; and one
    per trial whose model cannot be built (a ``ValueError`` from the model layer)."""
    count = VisualTokens()
    over: dict[tuple[str, Loc, int], tuple[YamlDocument, list[tuple[TrialSpec, int, int]]]] = {}
    issues: list[SpecIssue] = []
    for cand in candidates:
        trial = cand.trial
        try:
            visual = count(trial.model) * trial.data.image.max_images  # worst case: the most tiles a picture gets
        except ValueError as err:  # what only a built model knows, e.g. fusion_heads not dividing a width
            space = sources.space
            issues.append(SpecIssue(field=format_loc(cand.entry), file=space.path, line=space.line_of(cand.entry),
                                    message=f"trial '{trial.label}' cannot be built: {err}"))
            continue
        need = visual + min_text_tokens(trial.data.template)
        if need > trial.data.max_length:
            doc, loc = sources.place(("data", "max_length"), {}, cand.entry)
            rows = over.setdefault((str(doc.path), loc, trial.data.max_length), (doc, []))[1]
            if all(t.label != trial.label or v != visual for t, v, _ in rows):  # once per model, not per lr etc.
                rows.append((trial, visual, need))
    for (_, loc, max_length), (doc, rows) in over.items():
        need = max(n for _, _, n in rows)
        text = min(n - v for _, v, n in rows)
        trials = "; ".join(_describe(t, v) for t, v, _ in rows)
        where = "overrides: {data: {max_length: ...}} in the search space" if doc is sources.space else \
            "data.max_length in the recipe"
        issues.append(SpecIssue(
            field=format_loc(loc), file=doc.path, line=doc.line_of(loc),
            message=f"max_length {max_length} cannot fit a single sample of {len(rows)} trial(s): {trials}; each "
                    f"sample also has at least {text} text tokens ({rows[0][0].data.template} template), and "
                    f"samples are never truncated. Fix: raise data.max_length to at least {need} plus your longest "
                    f"conversation's text ({where}), or give these trials fewer visual tokens: fewer tiles, a "
                    "smaller model.grid, fewer experts, fusion channel_concat (grid² tokens), or a lower "
                    "data.image.max_tiles"))
    return issues


def source_issues(trial: TrialSpec, check_paths_exist: bool = True) -> Iterator[tuple[Loc, str]]:
    """``(trial field, message)`` for each problem of each declared training source: an unknown format, a missing
    path (or, with ``check_paths_exist``, one not on this machine), a table without the needed columns. Each
    source's format decides what it needs (``data/sources``)."""
    context = SourceContext(data=trial.data, data_dir=Path.cwd())
    for declared in trial.data.declared_sources():
        try:
            source = build_source(declared.name, declared.spec, context)
        except ValueError as err:  # an unregistered format
            yield declared.loc("format"), str(err)
            continue
        for issue in source.check(paths=check_paths_exist):
            yield declared.loc(issue.field), issue.message


def check_paths(candidates: list[Candidate], sources: TrialSources, check_paths_exist: bool = True
                ) -> list[SpecIssue]:
    """One issue per training-source problem and (with ``check_paths_exist``) per benchmark path that does not
    exist on this machine, per field."""
    issues: dict[tuple[str, str], SpecIssue] = {}

    def report(cand: Candidate, loc: Loc, message: str) -> None:
        doc, where = sources.place(loc, {}, cand.entry)
        field, line = format_loc(where), doc.line_of(where)
        if where == cand.entry and len(loc) > 2:  # a field nobody wrote (a missing path): at its source's line
            parent_doc, parent = sources.place(loc[:-1], {}, cand.entry)
            if parent != cand.entry:
                doc, field, line = parent_doc, format_loc((*parent, loc[-1])), parent_doc.line_of(parent)
        issues.setdefault((str(doc.path), field), SpecIssue(field=field, file=doc.path, line=line, message=message))

    checked: set[str] = set()
    for cand in candidates:
        data_key = cand.trial.data.model_dump_json()
        if data_key in checked:  # trials differing only in their model share their data
            continue
        checked.add(data_key)
        for loc, message in source_issues(cand.trial, check_paths_exist):
            report(cand, loc, message)
        if not check_paths_exist:
            continue
        for loc, value in benchmark_paths(cand.trial):
            if not Path(value).exists():
                report(cand, loc, f"'{value}' does not exist on this machine (relative paths are read from the "
                                  f"working directory, {Path.cwd()}); fix the path, or pass --no-check-paths when "
                                  "it exists only on the machines that run the trials")
    return list(issues.values())


def trial_sources(loaded: LoadedSearch, recipe_doc: YamlDocument | None = None) -> TrialSources:
    return TrialSources(space=loaded.doc, recipe=recipe_doc or read_yaml(loaded.recipe_path),
                        overrides=loaded.space.overrides, base=loaded.factory.base_dict())


def preflight(loaded: LoadedSearch, reachable: Iterable[Candidate], check_paths_exist: bool = True) -> None:
    """Raise :class:`SpecError` listing every token-budget and (unless disabled) missing-path problem of the
    ``reachable`` trials (the strategy's enumeration: ``eaglesearch.search.reachable_trials``)."""
    sources = trial_sources(loaded)
    candidates = list(reachable)
    issues = check_token_budget(candidates, sources)
    issues += check_paths(candidates, sources, check_paths_exist)
    if issues:
        raise SpecError(list({i.render(): i for i in issues}.values()))  # trials differing in lr: one message
