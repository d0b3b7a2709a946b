"""The streaming loader (eaglesearch.data.loader): the batch order of BatchStream whatever the workers, resumable,
per-rank shards, decode problems found in workers, and evaluation sharded over ranks with identical predictions."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

import eaglesearch.data.dataset as dataset_module
from eaglesearch.data import (
    DataProblem,
    TrainDataset,
    collate_train,
    read_llava_json,
    training_corpus,
    write_synthetic,
)
from eaglesearch.data.aspect import SQUARE
from eaglesearch.data.loader import SHARD, BatchStream, RowShard, batches, num_workers_for
from eaglesearch.evaluate.benchmarks import load_benchmark
from eaglesearch.evaluate.run import chunks_of, evaluate_benchmarks, predict
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.spec import (
    DataSpec,
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrainSpec,
)
from eaglesearch.train import train
from eaglesearch.train.distributed import (
    WorldInfo,
    destroy_process_group,
    free_port,
    global_rows,
    init_process_group,
    shard_batch,
)
from eaglesearch.trial.data import make_benchmark

torch.set_num_threads(1)

SYNTH = SyntheticDataSpec(tasks=("count", "color"), train_per_task=10, eval_per_task=5, image_size=64)
TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random"),), grid=4, lm=TINY_LM)
VISUAL = 16
TRAIN = TrainSpec(steps=3, batch_size=4, lr=1e-3, warmup_ratio=0.0, log_every=1).stages[0]


def _data(root: Path):
    return write_synthetic(SYNTH, root)  # written once; later calls only return the paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Synthetic data and a tokenizer on disk (spawned ranks load the very same ones)."""
    root = tmp_path_factory.mktemp("loader")
    data = _data(root / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples), cache_dir=root / "tok")
    return root / "ds", root / "tok"


def _dataset(setup, **kw) -> tuple[TrainDataset, object]:
    data = _data(setup[0])
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), None, cache_dir=setup[1])
    samples = read_llava_json(data.train_json, data.image_folder)
    return TrainDataset(samples, tokenizer, 32, VISUAL, max_length=96, **kw), tokenizer


def _take(stream: BatchStream, n: int) -> list[dict[str, torch.Tensor]]:
    return [next(stream) for _ in range(n)]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) if isinstance(a[k], torch.Tensor) else a[k] == b[k]
                                        for k in a)


def test_workers_keep_the_order_resume_anywhere_and_leave_the_rng_alone(setup) -> None:
    dataset, tokenizer = _dataset(setup)
    collate = lambda b: collate_train(b, tokenizer.pad_token_id)
    per_epoch = len(dataset) // 6
    reference = _take(batches(dataset, 6, collate, seed=5), 2 * per_epoch + 1)  # in-process, across epochs
    rng = torch.get_rng_state()
    stream = batches(dataset, 6, collate, seed=5, num_workers=2, prefetch_factor=1)
    got = _take(stream, len(reference))
    assert all(_same(a, b) for a, b in zip(got, reference, strict=True))
    assert stream.position == (2, 1)
    stream.seek((1, 1))  # restarts the workers there: what an uninterrupted stream yields from that batch on
    assert all(_same(a, b) for a, b in zip(_take(stream, 3), reference[per_epoch + 1:per_epoch + 4], strict=True))
    stream.close()
    assert torch.equal(torch.get_rng_state(), rng)  # worker seeds never come from the global RNG


def test_an_item_decodes_its_image_once_and_the_index_decodes_none(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Path] = []
    real = dataset_module.load_image

    def counting(path: Path, size: int, policy=SQUARE) -> torch.Tensor:
        calls.append(Path(path))
        return real(path, size, policy)

    monkeypatch.setattr(dataset_module, "load_image", counting)
    dataset, _ = _dataset(setup)
    assert calls == []  # building the index decodes nothing
    item = dataset[3]
    assert calls == [dataset.samples[3].image] and item["images"].shape == (3, 32, 32)
    assert item["input_ids"].tolist() == dataset.encoded[3][0] and "images" not in vars(dataset)


def test_rank_shards_are_the_rows_of_each_global_batch(setup) -> None:
    dataset, tokenizer = _dataset(setup)
    collate = lambda b: collate_train(b, tokenizer.pad_token_id)
    whole = _take(batches(dataset, 8, collate, seed=1), 4)
    for world in (2, 4):
        shards = [_take(batches(dataset, 8, collate, seed=1, shard=(r, world), num_workers=r % 2), 4)
                  for r in range(world)]
        for step, full in enumerate(whole):
            mine = [shards[r][step] for r in range(world)]
            # the ranks' rows, in rank order, are the global batch: same images, same answer tokens
            assert torch.equal(torch.cat([m["images"] for m in mine]), full["images"])
            assert sum(int((m["labels"] != -100).sum()) for m in mine) == int((full["labels"] != -100).sum())
            for r, m in enumerate(mine):
                assert m[SHARD] == RowShard(r, world, 8) and global_rows(m) == 8
                assert shard_batch(m, WorldInfo(r, world)) is m  # already this rank's rows: left as it is
        with pytest.raises(ValueError, match=f"rank 0's rows of {world} workers, but this is rank 1"):
            shard_batch(shards[0][0], WorldInfo(1, world))
    with pytest.raises(ValueError, match="does not divide by the 3 workers"):
        batches(dataset, 8, collate, seed=1, shard=(0, 3))


def _broken(setup, tmp_path: Path, victim: int) -> Path:
    """A copy of the training json whose sample ``victim`` points at a truncated PNG (its header still reads)."""
    data = _data(setup[0])
    records = json.loads(data.train_json.read_text())
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "PNG")
    (data.image_folder / "truncated.png").write_bytes(buffer.getvalue()[:60])
    records[victim]["image"] = "truncated.png"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(records))
    return path


def test_a_file_that_fails_to_decode_in_a_worker_is_replaced_or_raised(setup, tmp_path: Path) -> None:
    data = _data(setup[0])
    path = _broken(setup, tmp_path, victim=5)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), None, cache_dir=setup[1])
    samples = read_llava_json(path, data.image_folder)
    collate = lambda b: collate_train(b, tokenizer.pad_token_id)

    def stream(policy: str, workers: int) -> BatchStream:
        ds = TrainDataset(samples, tokenizer, 32, VISUAL, max_length=96, on_problem=policy,
                          check_images="header" if workers else "none")
        assert len(ds) == len(samples)  # its header reads: found only where it is decoded
        return batches(ds, 4, collate, seed=2, num_workers=workers)

    skipping = [stream("skip", 0), stream("skip", 1)]
    epochs = [_take(s, 2 * (len(samples) // 4)) for s in skipping]  # two epochs: the bad sample is read twice
    assert all(_same(a, b) for a, b in zip(*epochs, strict=True))  # the same substitute, with or without workers
    replaced = skipping[0].dataset[5]  # type: ignore[attr-defined]
    assert [p.sample_id for p in replaced["problems"]] == [samples[5].id]
    assert torch.equal(replaced["input_ids"], skipping[0].dataset[6]["input_ids"])  # type: ignore[attr-defined]
    for s in skipping:  # counted once per sample, in the main process
        report = s.dataset.report  # type: ignore[attr-defined]
        assert report.skipped == {"unreadable_image": 1} and report.examples == {"unreadable_image": [samples[5].id]}
        assert report.kept == len(samples) - 1
    failing = stream("error", 1)
    with pytest.raises(DataProblem, match=rf"{path} record 5: sample '{samples[5].id}': image file .* cannot be "
                       r"decoded .*data.on_problem: \{unreadable_image: skip\}") as err:
        _take(failing, 2 * (len(samples) // 4))
    assert err.value.kind == "unreadable_image" and err.value.sample_id == samples[5].id
    (data.image_folder / "truncated.png").unlink()


def test_num_workers_setting_and_default() -> None:
    assert num_workers_for(None, 16, on_gpu=True) == 8 and num_workers_for(None, 4, on_gpu=True) == 3
    assert num_workers_for(None, 1, on_gpu=True) == 1 and num_workers_for(None, 8, on_gpu=False) == 0
    assert num_workers_for(0, 16, on_gpu=True) == 0 and num_workers_for(5, 1, on_gpu=False) == 5
    assert DataSpec().model_dump().get("num_workers") is None and "num_workers" not in DataSpec().model_dump()
    with pytest.raises(ValueError):
        DataSpec(num_workers=-1)


def _benchmarks(root: Path) -> list:
    data = _data(root)
    return [make_benchmark(task, "synthetic", load_benchmark("synthetic", path, data.image_folder))
            for task, path in data.eval_json.items()]


def _model(tok_dir: Path):
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), None, cache_dir=tok_dir)
    torch.manual_seed(0)
    return build_eagle(SPEC, tokenizer), tokenizer


def test_sharded_evaluation_batches_are_the_one_process_batches(setup) -> None:
    model, tokenizer = _model(setup[1])
    bench = _benchmarks(setup[0])[0]
    settings = {"image_size": 32, "batch_size": 2, "max_new_tokens": 3}
    whole = predict(model, tokenizer, bench, **settings)
    assert chunks_of(5, 2) == [[0, 1], [2, 3], [4]] and chunks_of(5, 2, (1, 2)) == [[2, 3]]
    parts = [predict(model, tokenizer, bench, shard=(r, 2), num_workers=r, **settings) for r in range(2)]
    assert [r.scored.item.id for r in parts[0]] == [i.id for i in bench.items[:2] + bench.items[4:]]
    mine = {r.scored.item.id: r for part in parts for r in part}
    assert [mine[r.scored.item.id] for r in whole] == whole  # identical predictions and values


def _rank(rank: int, world_size: int, port: int, root: Path, tok_dir: Path, out: Path) -> None:
    world = init_process_group(rank, world_size, port=port, backend="gloo")
    try:
        torch.set_num_threads(1)
        losses, records = _train_and_evaluate((root, tok_dir), world)
        if rank == 0:
            torch.save({"losses": losses, "records": records}, out / "rank0.pt")
        else:
            assert records == []
    finally:
        destroy_process_group()


def _train_and_evaluate(setup, world: WorldInfo | None):
    dataset, _ = _dataset(setup)
    model, tokenizer = _model(setup[1])
    shard = (world.rank, world.world_size) if world is not None else None
    stream = batches(dataset, TRAIN.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), 4, shard=shard,
                     num_workers=1 if world is not None else 0)
    stats = train(model, stream, TRAIN, world=world)
    records, _ = evaluate_benchmarks(model, tokenizer, _benchmarks(setup[0]), image_size=32, batch_size=2,
                                     max_new_tokens=3, shard=shard, num_workers=1 if world is not None else 0)
    return stats.losses, records


@pytest.mark.slow  # spawns two gloo ranks (a torch import each)
def test_two_ranks_on_their_own_shards_reproduce_one_process(setup, tmp_path: Path) -> None:
    mp.spawn(_rank, args=(2, free_port(), *setup, tmp_path), nprocs=2, join=True)
    got = torch.load(tmp_path / "rank0.pt", weights_only=False)
    losses, records = _train_and_evaluate(setup, None)
    torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(losses), rtol=1e-5, atol=0)
    assert [r.scored.item.id for r in got["records"]] == [r.scored.item.id for r in records]
    assert [r.scored.prediction for r in got["records"]] == [r.scored.prediction for r in records]
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_a_truncated_image_is_a_problem_whatever_another_library_set(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """lmms-eval sets PIL's process-wide LOAD_TRUNCATED_IMAGES on import (the exported-model adapter imports it):
    eaglesearch still decodes strictly, so a truncated file stays the sample's problem, and the flag is left as
    it was found."""
    from PIL import ImageFile

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 30)).save(buffer, "PNG")
    path = tmp_path / "truncated.png"
    path.write_bytes(buffer.getvalue()[:60])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(OSError, match="truncated"):
        dataset_module.load_image(path, 32)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
