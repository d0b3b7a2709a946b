"""The data-source seam: every format yields the same records (id, conversation, image reference, source name),
images stay references until decoded, and each format names its own problems."""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from eaglesearch.data import DataProblem, Sample, load_image
from eaglesearch.data.dataset import decode_sample_image
from eaglesearch.data.image_ref import ImageBytes, TableCell, TarMember
from eaglesearch.data.policy import DataReport, screen_records
from eaglesearch.data.sources import (
    DataSource,
    SourceContext,
    build_source,
    register_source,
    source_formats,
)
from eaglesearch.spec import DataSpec
from eaglesearch.spec.sources import SourceSpec

CONV = [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]
CONTEXT = SourceContext(data=DataSpec(), data_dir=Path("."))


def _png(colour: tuple[int, int, int] = (255, 0, 0), size: int = 8) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def _source(name: str, **spec) -> DataSource:
    return build_source(name, SourceSpec(**spec), CONTEXT)


def test_builtin_formats_are_registered_and_unknown_ones_are_named() -> None:
    assert {"synthetic", "synthetic_captions", "llava", "jsonl", "hf_disk", "parquet", "webdataset"} <= set(
        source_formats())
    with pytest.raises(ValueError, match="unknown source format 'csv'; registered formats: hf_disk, jsonl"):
        _source("x", format="csv", path="a.csv")

    class Dupe(DataSource):
        format = "llava"

        def records(self):  # pragma: no cover - never read
            return []

    with pytest.raises(ValueError, match="'llava' is already registered"):
        register_source(Dupe)


def test_llava_json_and_jsonl_give_the_same_records(tmp_path: Path) -> None:
    (tmp_path / "img.png").write_bytes(_png())
    records = [{"id": "a", "image": "img.png", "conversations": CONV}, {"id": "b", "conversations": CONV}]
    (tmp_path / "d.json").write_text(json.dumps(records))
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{not json\n")
    from_json = _source("js", format="llava", path=str(tmp_path / "d.json"), image_folder=str(tmp_path)).records()
    from_jsonl = _source("jl", format="jsonl", path=str(tmp_path / "d.jsonl"), image_folder=str(tmp_path)).records()
    assert from_json == from_jsonl[:2]  # equality ignores the source name
    assert [r.source for r in from_jsonl[:2]] == ["jl", "jl"] and from_json[0].source == "js"
    assert from_json[0].image == tmp_path / "img.png" and from_json[1].image is None
    bad = from_jsonl[2]
    assert isinstance(bad, DataProblem) and bad.kind == "malformed" and bad.source == "jl"
    assert "line 3: not valid json" in str(bad)
    wrong_suffix = _source("jl", format="jsonl", path=str(tmp_path / "d.json"))
    assert [i.field for i in wrong_suffix.check()] == ["path"]


def test_hf_disk_keeps_images_in_the_table_until_decoded(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    rows = {"id": ["r0", "r1"], "conversations": [CONV, CONV],
            "image": [{"bytes": _png((0, 255, 0)), "path": None}, {"bytes": _png((0, 0, 255)), "path": None}]}
    features = datasets.Features({"id": datasets.Value("string"),
                                  "conversations": [{"from": datasets.Value("string"),
                                                     "value": datasets.Value("string")}],
                                  "image": datasets.Image()})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "hf"))
    source = _source("docs", format="hf_disk", path=str(tmp_path / "hf"))
    assert source.check() == [] and source.count() == 2
    records = source.records()
    assert [r.id for r in records] == ["r0", "r1"] and all(r.source == "docs" for r in records)
    assert isinstance(records[1].image, TableCell) and records[1].image.row == 1
    pixels = load_image(records[1].image, 4)
    assert pixels.shape == (3, 4, 4) and pixels[2].min() == 255 and pixels[0].max() == 0  # blue, decoded late
    no_conv = _source("docs", format="hf_disk", path=str(tmp_path / "hf"), columns={"conversations": "turns"})
    (issue,) = no_conv.check()
    assert issue.field == "columns" and "no 'turns' column" in issue.message and "columns: id, conversations, image" \
        in issue.message


def test_parquet_reads_path_columns_and_json_conversations(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_png())
    table = pa.table({"qid": ["q0", "q1"], "conv": [json.dumps(CONV), "not json"], "image": ["a.png", None]})
    pq.write_table(table, tmp_path / "t.parquet")
    source = _source("charts", format="parquet", path=str(tmp_path / "t.parquet"), image_folder=str(tmp_path / "imgs"),
                     columns={"id": "qid", "conversations": "conv"})
    assert source.check() == [] and source.count() == 2
    good, bad = source.records()
    assert good.id == "q0" and good.image == tmp_path / "imgs" / "a.png" and good.turns[1] == ("assistant", "red")
    assert isinstance(bad, DataProblem) and bad.kind == "malformed" and bad.source == "charts"
    blobs = pa.table({"conversations": [json.dumps(CONV)], "image": [{"bytes": _png((9, 9, 9)), "path": None}]})
    pq.write_table(blobs, tmp_path / "b.parquet")
    (record,) = _source("b", format="parquet", path=str(tmp_path / "b.parquet")).records()
    assert isinstance(record.image, TableCell) and int(load_image(record.image, 2)[0, 0, 0]) == 9


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_webdataset_shards_index_members_and_read_images_at_their_offset(tmp_path: Path) -> None:
    (tmp_path / "shards").mkdir()
    _tar(tmp_path / "shards" / "s-000.tar", {
        "x/k0.json": json.dumps({"id": "k0", "conversations": CONV}).encode(), "x/k0.png": _png((1, 2, 3)),
        "x/k1.json": json.dumps(CONV).encode(),  # the turns list itself; no image: text-only
        "x/k2.png": _png(),  # no json: malformed
    })
    _tar(tmp_path / "shards" / "s-001.tar", {"k3.json": json.dumps({"conversations": CONV}).encode(),
                                             "k3.seg.png": _png((7, 7, 7))})
    source = _source("web", format="webdataset", path=str(tmp_path / "shards" / "s-*.tar"))
    assert source.check() == []
    records = source.records()
    assert [r.id if isinstance(r, Sample) else r.kind for r in records] == ["k0", "x/k1", "malformed", "k3"]
    assert isinstance(records[0].image, TarMember) and records[1].image is None
    assert load_image(records[0].image, 2)[:, 0, 0].tolist() == [1, 2, 3]
    assert records[3].image is None  # 'seg.png' is a field of its own, not the sample's image
    assert _source("web", format="webdataset", path=str(tmp_path / "none-*.tar")).check()[0].field == "path"


def test_a_missing_path_is_named_with_its_field(tmp_path: Path) -> None:
    (issue,) = _source("a", format="llava").check()
    assert issue.field == "path" and "needs a path" in issue.message
    (issue,) = _source("a", format="llava", path=str(tmp_path / "nope.json")).check()
    assert issue.field == "path" and "does not exist on this machine" in issue.message
    assert _source("a", format="llava", path=str(tmp_path / "nope.json")).check(paths=False) == []


def test_an_undecodable_image_is_a_picklable_problem_of_its_source_and_sample(tmp_path: Path) -> None:
    sample = Sample(id="s7", image=ImageBytes(b"not an image"), turns=(("user", "<image>"), ("assistant", "x")),
                    source="docvqa")
    with pytest.raises(DataProblem) as err:
        decode_sample_image(sample, 8)
    problem = pickle.loads(pickle.dumps(err.value))  # it crosses from a loader worker to the trial
    assert (problem.kind, problem.sample_id, problem.source) == ("unreadable_image", "s7", "docvqa")
    assert "source 'docvqa'" in str(problem)
    kept, report = screen_records([problem, sample], on_problem="skip", report=DataReport(source="m"))
    assert kept == [sample] and report.by_source == {"docvqa": 1} and report.skipped == {"unreadable_image": 1}
    ok = Sample(id="ok", image=ImageBytes(_png()), turns=sample.turns, source="docvqa")
    assert torch.equal(decode_sample_image(ok, 8)[0], torch.full((8, 8), 255, dtype=torch.uint8))


MIXED_RECIPE = """\
name: mixed
scale: tiny_random
model:
  grid: 4
  lm: {{kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}}
  tokenizer: {{kind: offline_bpe, vocab_size: 300}}
data:
  source: llava
  image_size: 64
  max_length: 160
  train:
    lines: {{format: jsonl, path: {jsonl}, image_folder: {images}, ratio: 0.5}}
    table: {{format: hf_disk, path: {hf}}}
    shards: {{format: webdataset, path: {tar}}}
  eval:
    color: {{kind: llava, path: {bench}, image_folder: {images}}}
train: {{steps: 2, batch_size: 4}}
eval: {{batch_size: 4, max_new_tokens: 2}}
"""


@pytest.mark.slow
def test_a_trial_trains_on_a_mixture_of_formats(tmp_path: Path) -> None:
    """jsonl + HF datasets on disk (image bytes) + webdataset shards in one mixture, through a real run: images are
    decoded from their references, the ratio shapes the draw, and MLflow records the per-source counts."""
    datasets = pytest.importorskip("datasets")
    from eaglesearch.data import write_synthetic
    from eaglesearch.spec import SyntheticDataSpec
    from eaglesearch.tracking import TrackingStore
    from tests.e2e_helpers import cli

    syn = write_synthetic(SyntheticDataSpec(tasks=("color",), train_per_task=12, eval_per_task=2, image_size=64),
                          tmp_path / "syn")
    records = json.loads(syn.train_json.read_text())
    (tmp_path / "lines.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records[:4]))
    datasets.Dataset.from_dict(
        {"id": [r["id"] for r in records[4:8]], "conversations": [json.dumps(r["conversations"]) for r in records[4:8]],
         "image": [{"bytes": (syn.image_folder / r["image"]).read_bytes(), "path": None} for r in records[4:8]]},
        features=datasets.Features({"id": datasets.Value("string"), "conversations": datasets.Value("string"),
                                    "image": datasets.Image()})).save_to_disk(str(tmp_path / "hf"))
    _tar(tmp_path / "s.tar", {k: v for r in records[8:] for k, v in (
        (f"{r['id']}.json", json.dumps(r).encode()), (f"{r['id']}.png", (syn.image_folder / r["image"]).read_bytes()))})
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "mixed.yaml").write_text(MIXED_RECIPE.format(
        jsonl=tmp_path / "lines.jsonl", images=syn.image_folder, hf=tmp_path / "hf", tar=tmp_path / "s.tar",
        bench=next(iter(syn.eval_json.values()))))
    (tmp_path / "s.yaml").write_text("name: mixed\nrecipe: experiments/mixed.yaml\n"
                                     "strategy: {kind: grid, factors: {experts: [[{name: clip, resolution: 32}]]}}\n")
    proc = cli(tmp_path, "run", "s.yaml", "--executor", "inline", "--quiet")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    store = TrackingStore(f"sqlite:///{tmp_path}/mlflow.db")
    run = store.trial_runs(store.latest_parent("mixed")).iloc[0]
    assert run["status_tag"] == "finished", run.get("error")
    drawn = {s: run[f"data/sft/{s}/samples"] for s in ("lines", "table", "shards")}
    assert drawn == {"lines": 6, "table": 3, "shards": 3}  # half of the 12 from lines, the rest by size
    assert run["data/kept"] == 12 and (tmp_path / "reports" / "mixed" / "data.md").is_file()
