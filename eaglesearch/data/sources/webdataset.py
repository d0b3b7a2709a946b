"""webdataset tar shards, read with the standard library's ``tarfile`` (no extra dependency).

``path`` is one ``.tar`` file, a folder of them, or a glob (``shards/train-*.tar``); shards are read in name
order. A sample is the run of consecutive members sharing a key (the name up to the first dot, as webdataset
defines it): ``<key>.json`` holds the record (``{conversations}`` or the turns list itself, an optional ``id``),
and ``<key>.jpg``/``.jpeg``/``.png``/``.webp`` its image. Indexing a shard reads the json members and the image
members' offsets only; an image is read at its offset when a loader worker decodes it
(:class:`~eaglesearch.data.image_ref.TarMember`). Members are never unpickled or ``torch.load``-ed.
"""

from __future__ import annotations

import glob
import json
import tarfile
from pathlib import Path

from eaglesearch.data.image_ref import TarMember
from eaglesearch.data.llava import DataProblem, Sample, parse_turns
from eaglesearch.data.sources.base import DataSource, Record, SourceIssue, register_source

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")


@register_source
class WebDatasetSource(DataSource):
    format = "webdataset"

    def shards(self) -> list[Path]:
        raw = str(self.spec.path)
        if any(c in raw for c in "*?["):
            return [Path(p) for p in sorted(glob.glob(raw))]
        path = Path(raw)
        return sorted(path.glob("*.tar")) if path.is_dir() else [path]

    def check(self, paths: bool = True) -> list[SourceIssue]:
        if self.spec.path is not None and any(c in self.spec.path for c in "*?["):
            if paths and not self.shards():
                return [SourceIssue("path", f"source '{self.name}' (webdataset): no shard matches '{self.spec.path}'")]
            return self.check_more() if paths else []
        return super().check(paths)

    def check_more(self) -> list[SourceIssue]:
        if not self.shards():
            return [SourceIssue("path", f"source '{self.name}' (webdataset): '{self.spec.path}' holds no .tar shards")]
        return []

    def records(self) -> list[Record]:
        out: list[Record] = []
        for shard in self.shards():
            out += self._shard(shard)
        return out

    def _shard(self, shard: Path) -> list[Record]:
        samples: dict[str, dict[str, tarfile.TarInfo]] = {}
        texts: dict[str, bytes] = {}
        try:
            with tarfile.open(shard) as tar:
                for member in tar:
                    if not member.isfile() or "." not in Path(member.name).name:
                        continue
                    folder, base = member.name.rpartition("/")[::2]
                    stem, field = base.split(".", 1)
                    key = f"{folder}/{stem}" if folder else stem
                    samples.setdefault(key, {})[field.lower()] = member
                    if field.lower() == "json":
                        handle = tar.extractfile(member)
                        texts[key] = handle.read() if handle is not None else b""
        except (OSError, tarfile.TarError) as err:
            raise ValueError(f"source '{self.name}': shard {shard} cannot be read ({err}); re-create it") from None
        return [self._record(shard, key, fields, texts.get(key)) for key, fields in samples.items()]

    def _record(self, shard: Path, key: str, fields: dict[str, tarfile.TarInfo], text: bytes | None) -> Record:
        where = f"{shard}: sample {key!r}"
        try:
            record = json.loads(text) if text is not None else None
        except (json.JSONDecodeError, UnicodeDecodeError):
            record = None
        if record is None:
            return DataProblem("malformed", key, f"{where} has no readable {key}.json (the conversation); each sample "
                               "needs <key>.json with {conversations: [...]}", source=self.name)
        sample_id = str(record.get("id", key)) if isinstance(record, dict) else key
        conversations = record.get("conversations") if isinstance(record, dict) else record
        try:
            turns = parse_turns(conversations, sample_id, where)
        except DataProblem as problem:
            problem.source = self.name
            return problem
        image = next((fields[s] for s in IMAGE_SUFFIXES if s in fields), None)
        ref = TarMember(shard=shard, member=image.name, offset=image.offset_data, size=image.size) if image else None
        return Sample(id=sample_id, image=ref, turns=turns, origin=where, source=self.name)
