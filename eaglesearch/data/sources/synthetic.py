"""The synthetic world as sources: the generator's training conversations (optionally some of its tasks only,
so each skill of the tiny world can be a source of its own) and its caption pairs.

The generator writes once per settings into the trial's data folder (``write_synthetic`` is idempotent and safe
under concurrent writers); both formats read its json files like any LLaVA json.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path

from eaglesearch.data.llava import Sample, read_llava_records
from eaglesearch.data.sources.base import DataSource, Record, SourceContext, SourceIssue, register_source
from eaglesearch.data.synthetic import GENERATOR_VERSION, SyntheticDataset, write_synthetic
from eaglesearch.spec.keys import content_key


def generated_dataset(context: SourceContext) -> SyntheticDataset:
    """The generator's files for the trial's ``data.synthetic`` settings (written on first use)."""
    spec = context.data.synthetic
    if spec is None:
        raise ValueError("a synthetic source needs data.synthetic (the generator's settings)")
    digest = content_key([GENERATOR_VERSION, spec.model_dump(mode="json")], 12, spaced=True)
    return write_synthetic(spec, Path(context.data_dir) / f"synthetic-{digest}")


def task_of(sample_id: str) -> str:
    """The generator's task of a record: its ids are ``<task>-<split>-<index>`` (captions
    ``<task>-<split>-caption-<index>``) and task names hold no '-'."""
    return sample_id.split("-", 1)[0]


class _Generated(DataSource):
    needs_path = False
    generated = True

    def check_more(self) -> list[SourceIssue]:
        synthetic = self.context.data.synthetic
        if synthetic is None:
            return [SourceIssue("format", f"source '{self.name}' ({self.format}) reads the synthetic generator's "
                                "output, but data.synthetic is not set; set data.source: synthetic or give "
                                "data.synthetic")]
        unknown = sorted(set(self.spec.tasks or ()) - set(synthetic.tasks))
        if unknown:
            return [SourceIssue("tasks", f"source '{self.name}': task(s) {', '.join(unknown)} are not generated; "
                                f"data.synthetic.tasks: {', '.join(synthetic.tasks)}")]
        return []

    @abstractmethod
    def _json(self, dataset: SyntheticDataset) -> Path:
        """The generator's file this format reads."""

    def records(self) -> list[Record]:
        issues = self.check_more()
        if issues:
            raise ValueError(issues[0].message)
        dataset = generated_dataset(self.context)
        found = read_llava_records(self._json(dataset), dataset.image_folder, source=self.name)
        wanted = set(self.spec.tasks) if self.spec.tasks is not None else None
        return [r for r in found if wanted is None or task_of(_record_id(r)) in wanted]

    def count(self) -> int | None:
        synthetic = self.context.data.synthetic
        if synthetic is None:
            return None
        return synthetic.train_per_task * len(self.spec.tasks or synthetic.tasks)


def _record_id(record: Record) -> str:
    return record.id if isinstance(record, Sample) else record.sample_id


@register_source
class SyntheticSource(_Generated):
    """The generator's training conversations (all its tasks, or ``tasks``)."""

    format = "synthetic"

    def _json(self, dataset: SyntheticDataset) -> Path:
        return dataset.train_json


@register_source
class SyntheticCaptionSource(_Generated):
    """The generator's caption pairs, one per training image (all tasks' images, or ``tasks``')."""

    format = "synthetic_captions"

    def _json(self, dataset: SyntheticDataset) -> Path:
        return dataset.caption_json

