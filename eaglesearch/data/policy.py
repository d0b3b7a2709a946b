"""Problem samples: stop on them (naming file, record and fix) or skip them and count them — ``data.on_problem``.

Every reason a training sample cannot be used is a problem *kind* (``eaglesearch.spec.data.PROBLEM_KINDS``):

* ``malformed``: the record is not a valid LLaVA conversation (not an object, no ``conversations``, an unknown
  role, turns not alternating user/assistant, several ``<image>`` placeholders, a placeholder without an image);
* ``missing_image``: the record's image file does not exist;
* ``unreadable_image``: the image file exists but cannot be decoded (truncated, not an image);
* ``no_answer``: no assistant turn, or the conversation ends with an unanswered user turn;
* ``template``: the conversation does not fit ``data.template`` (``plain``: one image and one caption);
* ``text_only``: the sample has no image and the model cannot train on text-only samples (yet);
* ``too_long``: longer than ``data.max_length`` tokens, visual tokens included; samples are never truncated, so
  an answer is never silently cut away;
* ``no_target``: nothing to learn: every answer is empty, or every label would be -100 (a zero-loss sample).

The policy (:class:`~eaglesearch.spec.data.OnProblemSpec`) gives each kind an action: ``error`` raises a
:class:`~eaglesearch.data.llava.DataProblem` naming the file, the record (index and id), the problem and the fixes
(including the ``on_problem`` setting that would skip it); ``skip`` drops the sample and counts it in a
:class:`DataReport` (counts per kind, the first few ids per kind) that the caller logs. One action for every kind
(``on_problem: skip``) or per kind (``on_problem: {default: error, too_long: skip}``): skipping over-long samples is
routine, while a missing image usually means a wrong ``image_folder`` and should stop the run. A policy that
skips every sample is an error too (the report says why).

The stages, usable separately or together:

* :func:`read_training_samples` — the json, leniently (``malformed``, ``missing_image``); no tokenizer needed, so
  it can feed :func:`~eaglesearch.data.conversation.training_corpus`;
* :func:`prepare_training_samples` — per sample: ``text_only``, the image (``missing_image``,
  ``unreadable_image``: by decoding it, by reading its header only, or not at all, per ``check_images``), then the
  encoding (``malformed``, ``no_answer``, ``template``, ``no_target``, ``too_long``);
* :func:`load_training_samples` — both, with one report.

A training dataset (:class:`~eaglesearch.data.dataset.TrainDataset`) checks only image headers up front and decodes
each image where it is used, in a loader worker: a file that fails to decode there is
the same ``unreadable_image`` problem, raised per the policy (:func:`escalate`) or counted and replaced.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image
from transformers import PreTrainedTokenizerBase

from eaglesearch.data.conversation import TemplateArg, encode_for_training
from eaglesearch.data.image_ref import image_exists, open_image, strict_decoding
from eaglesearch.data.llava import DataProblem, Sample, read_llava_records
from eaglesearch.spec.data import PROBLEM_KINDS, OnProblemSpec, ProblemAction

OnProblem = OnProblemSpec | ProblemAction | Mapping[str, str]
ImageCheck = Literal["decode", "header", "none"]
"""How far :func:`prepare_training_samples` checks an image up front: decode it fully (a standalone check of a
data set), read its header only (a training dataset: the full decode happens once, in the loader), or not at all."""

DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)

MAX_EXAMPLES = 5


def problem_policy(on_problem: OnProblem) -> OnProblemSpec:
    """``on_problem`` as a policy: a spec, ``"error"``/``"skip"`` for every kind, or ``{kind: action, …}``."""
    if isinstance(on_problem, OnProblemSpec):
        return on_problem
    return OnProblemSpec.model_validate(on_problem if isinstance(on_problem, str) else dict(on_problem))


@dataclass
class DataReport:
    """What a policy did to a training split: samples looked at, skipped per problem kind, first ids per kind."""

    source: str
    total: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)  # skipped per mixture source (when samples name one)

    @property
    def n_skipped(self) -> int:
        return sum(self.skipped.values())

    @property
    def kept(self) -> int:
        return self.total - self.n_skipped

    def add(self, problem: DataProblem) -> None:
        """Count ``problem``'s sample as skipped."""
        self.skipped[problem.kind] = self.skipped.get(problem.kind, 0) + 1
        if problem.source is not None:
            self.by_source[problem.source] = self.by_source.get(problem.source, 0) + 1
        ids = self.examples.setdefault(problem.kind, [])
        if len(ids) < MAX_EXAMPLES:
            ids.append(problem.sample_id)

    def summary(self) -> str:
        """One line for the log, e.g. ``train.json: kept 97 of 100 samples; skipped 3: too_long 2 (ids 'a', 'b')``."""
        head = f"{self.source}: kept {self.kept} of {self.total} samples"
        if not self.skipped:
            return head
        parts = []
        for kind in PROBLEM_KINDS:
            if kind in self.skipped:
                ids = ", ".join(repr(i) for i in self.examples.get(kind, []))
                more = ", …" if self.skipped[kind] > len(self.examples.get(kind, [])) else ""
                parts.append(f"{kind} {self.skipped[kind]} (ids {ids}{more})")
        return f"{head}; skipped {self.n_skipped}: " + ", ".join(parts)

    def as_metrics(self) -> dict[str, float]:
        """Flat numbers to log: ``data/total``, ``data/kept``, ``data/skipped`` and ``data/skipped/<kind>``."""
        out = {"data/total": float(self.total), "data/kept": float(self.kept), "data/skipped": float(self.n_skipped)}
        out.update({f"data/skipped/{kind}": float(n) for kind, n in self.skipped.items()})
        return out


@dataclass(frozen=True, eq=False)
class EncodedSample:
    """A sample that passed every check, with its token ids and labels (-100 except on answers + end markers)."""

    sample: Sample
    input_ids: list[int]
    labels: list[int]


class _Handler:
    """Applies the policy to one problem: raise (with the way to skip it) or count it."""

    def __init__(self, policy: OnProblemSpec, report: DataReport) -> None:
        self.policy, self.report = policy, report

    def __call__(self, problem: DataProblem) -> None:
        if self.policy.action(problem.kind) == "error":
            raise escalate(problem) from None
        self.report.add(problem)


def escalate(problem: DataProblem) -> DataProblem:
    """``problem`` as the error a policy raises: its message plus the ``on_problem`` setting that would skip it."""
    return DataProblem(problem.kind, problem.sample_id,
                       f"{problem} [problem: {problem.kind}; to skip and count such samples instead, set "
                       f"data.on_problem: {{{problem.kind}: skip}} (or data.on_problem: skip for every kind)]",
                       source=problem.source)


def missing_image(sample: Sample) -> DataProblem:
    return DataProblem("missing_image", sample.id, f"{sample.name}: image file {sample.image} does not exist; fix "
                       "the record's 'image' or the split's image_folder", source=sample.source)


def unreadable_image(sample: Sample, err: BaseException) -> DataProblem:
    return DataProblem("unreadable_image", sample.id, f"{sample.name}: image file {sample.image} cannot be decoded "
                       f"({type(err).__name__}: {err}); re-create or re-download it, or remove the record",
                       source=sample.source)


def image_problem(sample: Sample, check: ImageCheck = "decode") -> DataProblem | None:
    """``missing_image`` or ``unreadable_image`` if the sample's image fails ``check``, None if it passes or the
    sample has no image. ``decode`` decodes it fully (a truncated file is caught); ``header`` only opens it (a file
    that is not an image is caught, a truncated one is not: its decode in the loader catches that)."""
    path = sample.image
    if path is None or check == "none":
        return None
    if not image_exists(path):
        return missing_image(sample)
    try:
        with strict_decoding(), open_image(path) as image:
            if check == "decode":
                image.load()
    except DECODE_ERRORS as err:
        return unreadable_image(sample, err)
    return None


def _text_only_problem(sample: Sample) -> DataProblem:
    return DataProblem("text_only", sample.id, f"{sample.name} has no image; text-only samples are not supported "
                       "yet (EagleModel needs exactly num_visual_tokens image tokens in every row); remove it")


def read_training_samples(json_path: Path, image_folder: Path, *, on_problem: OnProblem = "error",
                          report: DataReport | None = None) -> tuple[list[Sample], DataReport]:
    """The file's samples; records that are ``malformed`` or whose image is missing raise or are skipped and
    counted. File-level problems (no file, not json, not a list) always raise."""
    return screen_records(read_llava_records(json_path, image_folder), on_problem=on_problem,
                          report=report if report is not None else DataReport(source=str(json_path)))


def screen_records(records: Iterable[Sample | DataProblem], *, on_problem: OnProblem = "error",
                   report: DataReport) -> tuple[list[Sample], DataReport]:
    """The samples among ``records`` (what a source read); each problem raises or is skipped and counted in
    ``report`` (which also counts every record in its total)."""
    handle = _Handler(problem_policy(on_problem), report)
    samples = []
    for item in records:
        report.total += 1
        if isinstance(item, DataProblem):
            handle(item)
        else:
            samples.append(item)
    return samples, report


def prepare_training_samples(
    samples: Iterable[Sample],
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_visual_tokens: int,
    max_length: int,
    template: TemplateArg = "chatml",
    on_problem: OnProblem = "error",
    allow_text_only: bool = False,
    check_images: ImageCheck = "decode",
    report: DataReport | None = None,
    source: str = "training samples",
    keep: Callable[[EncodedSample], None] | None = None,
) -> tuple[list[EncodedSample], DataReport]:
    """Check and encode ``samples`` under the policy; the kept ones with their ids and labels, and the report.
    ``check_images`` says how far each image is checked (:data:`ImageCheck`). With ``keep`` each kept sample is
    handed to it as soon as it is encoded and the returned list is empty: a large index then never holds every
    sample's ids as Python lists at once.

    With ``report`` (from :func:`read_training_samples`) its counts continue; otherwise a new report counts
    ``samples``. ``allow_text_only`` is for a model that can train rows without visual tokens (EagleModel does:
    a row with no image tokens is never given visual tokens). Raises ``ValueError`` if samples were given and every one was skipped.
    """
    samples = list(samples)
    if report is None:
        report = DataReport(source=source, total=len(samples))
    handle = _Handler(problem_policy(on_problem), report)
    kept: list[EncodedSample] = []
    count = 0
    for sample in samples:
        problem = None
        if sample.image is None and not allow_text_only:
            problem = _text_only_problem(sample)
        else:
            problem = image_problem(sample, check_images)
        if problem is None:
            try:
                ids, labels = encode_for_training(tokenizer, sample, num_visual_tokens, max_length, template=template)
            except DataProblem as err:
                problem = err
        if problem is not None:
            problem.source = problem.source or sample.source
            handle(problem)
            continue
        count += 1
        if keep is None:
            kept.append(EncodedSample(sample, ids, labels))
        else:
            keep(EncodedSample(sample, ids, labels))
    if not count and report.total:
        raise ValueError(f"every training sample was skipped ({report.summary()}); fix the data or the settings "
                         "named by the problem kinds (data.image_folder, data.max_length, data.template)")
    return kept, report


def load_training_samples(
    json_path: Path,
    image_folder: Path,
    tokenizer: PreTrainedTokenizerBase,
    *,
    num_visual_tokens: int,
    max_length: int,
    template: TemplateArg = "chatml",
    on_problem: OnProblem = "error",
    allow_text_only: bool = False,
    check_images: ImageCheck = "decode",
) -> tuple[list[EncodedSample], DataReport]:
    """Read, check and encode a LLaVA-format training json under the policy, with one report for all stages."""
    samples, report = read_training_samples(json_path, image_folder, on_problem=on_problem)
    return prepare_training_samples(samples, tokenizer, num_visual_tokens=num_visual_tokens, max_length=max_length,
                                    template=template, on_problem=on_problem, allow_text_only=allow_text_only,
                                    check_images=check_images, report=report)
