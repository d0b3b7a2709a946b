"""What the streaming data path costs: memory and start-up per data-set size, decode throughput per worker, and
whether the model ever waits for the loader.

1. **Corpora.** LLaVA-format JPEG corpora of 1k, 10k and 100k records (640x480 JPEGs, as the measurement in issue
   19), loaded at ``image_size`` 448 and 1024. Generating 100k distinct JPEGs is expensive on a small machine, so
   ``--distinct`` pictures are written once and every record gets its own hard link to one of them: every record
   has its own file name, but the page cache holds all of them, so the throughputs below are decode-bound, not
   disk-bound (a cold network file system adds its own latency).
2. **Per corpus, in a fresh process:** the time to build the index (read the json, tokenise, check image headers),
   the time from an empty stream to its first batch (``num_workers`` forked decoders), and the process's peak RSS
   after a few batches (the main process: what grows with the data set if anything does; workers reported apart).
3. **Decode throughput** at each size with 1 and 2 workers (images/s while a consumer only takes batches), and
   the 2-over-1 scaling.
4. **The tiny-world trial's step time** (``experiments/tiny_world.yaml``: CLIP + SAM, 256 px, batch 16): the same
   ``train()`` run reading a streaming ``BatchStream`` against reading batches decoded beforehand (pre-decoded
   tensors), interleaved A/B in one process: the median time between steps (the first step, which waits for
   the workers to start, excluded); the ratio is the price of streaming, for 0 (in-process) and 1 worker.

    python benchmarks/data_pipeline.py [--records 1000 10000 100000] [--sizes 448 1024] [--workers 2]
                                       [--step-workers 0 1] [--steps 30] [--repeats 3] [--root /tmp/eaglesearch-jpeg]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from PIL import Image

import eaglesearch  # noqa: F401
from eaglesearch.data import TrainDataset, collate_train, read_training_samples, training_corpus
from eaglesearch.data.loader import BatchStream
from eaglesearch.model import load_tokenizer
from eaglesearch.spec import TokenizerSpec

QUESTIONS = ["What colour is the largest shape?", "How many shapes are there?", "Is there a red circle?",
             "What is written on the sign?", "Describe the picture."]
ANSWERS = ["blue", "3", "yes", "stop", "two squares and a circle on a grey background"]
BATCH = 16


# ------------------------------------------------------------------------------------------------ corpora

def corpus(root: Path, records: int, distinct: int) -> Path:
    """The json of a corpus of ``records`` records (written once under ``root``; reused afterwards)."""
    images = root / "images"
    pictures = root / "distinct"
    if not pictures.is_dir():
        pictures.mkdir(parents=True)
        rng = np.random.default_rng(0)
        for k in range(distinct):  # smooth gradients plus noise: JPEG-sized like photographs, not flat colour
            y, x = np.mgrid[0:480, 0:640]
            base = np.stack([(x * (k + 1)) % 256, (y * (k + 3)) % 256, ((x + y) * (k + 5)) % 256], axis=-1)
            noisy = np.clip(base + rng.normal(0, 24, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(noisy).save(pictures / f"{k}.jpg", quality=90)
    path = root / f"train-{records}.json"
    if path.is_file():
        return path
    images.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(records):
        name = images / f"{i:07d}.jpg"
        if not name.exists():
            os.link(pictures / f"{i % distinct}.jpg", name)
        q, a = QUESTIONS[i % len(QUESTIONS)], ANSWERS[i % len(ANSWERS)]
        out.append({"id": f"s{i}", "image": name.name,
                    "conversations": [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]})
    path.write_text(json.dumps(out))
    return path


def tokenizer(root: Path):
    cache = root / "tokenizer"
    samples, _ = read_training_samples(corpus(root, 1000, 1), root / "images")
    return load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus(samples[:200]), cache_dir=cache)


def _status_mb(field: str, pid: int | str = "self") -> float:
    """A memory line of /proc/<pid>/status (VmRSS: now, VmHWM: peak) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def _private_mb(pid: int) -> float:
    """Memory only this process holds (a forked worker shares the rest with its parent until it writes to it)."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty"))) / 1024


def one(root: Path, records: int, size: int, workers: int, batches: int) -> dict[str, float]:
    """Index, first batch, peak RSS for one corpus and size (run in a fresh process, so the peak is its own)."""
    torch.set_num_threads(1)
    tok = tokenizer(root)
    base_mb = _status_mb("VmRSS")
    start = time.perf_counter()
    samples, report = read_training_samples(corpus(root, records, 1), root / "images")
    dataset = TrainDataset(samples, tok, size, num_visual_tokens=64, max_length=128, report=report)
    index_s = time.perf_counter() - start
    start = time.perf_counter()
    stream = BatchStream(dataset, BATCH, lambda b: collate_train(b, tok.pad_token_id), seed=0, num_workers=workers)
    next(stream)
    first_s = time.perf_counter() - start
    for _ in range(batches - 1):
        next(stream)
    pids = [w.pid for w in getattr(stream._loader, "_workers", [])]
    worker_mb = max((_private_mb(pid) for pid in pids), default=0.0)
    rss = _status_mb("VmRSS")
    stream.close()
    return {"records": records, "size": size, "index_s": index_s, "first_batch_s": first_s,
            "base_rss_mb": base_mb, "rss_mb": rss, "peak_rss_mb": _status_mb("VmHWM"), "worker_private_mb": worker_mb}


def throughput(root: Path, size: int, workers: int, batches: int) -> float:
    """Images per second a stream with ``workers`` decoders delivers to a consumer that only takes batches."""
    torch.set_num_threads(1)
    tok = tokenizer(root)
    samples, _ = read_training_samples(corpus(root, 1000, 1), root / "images")
    dataset = TrainDataset(samples, tok, size, num_visual_tokens=64, max_length=128)
    stream = BatchStream(dataset, BATCH, lambda b: collate_train(b, tok.pad_token_id), seed=0, num_workers=workers)
    next(stream)  # workers started and warm
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    rate = batches * BATCH / (time.perf_counter() - start)
    stream.close()
    return rate


# ---------------------------------------------------------------------------------------------- step time

def step_time(root: Path, steps: int, repeats: int, workers: int) -> dict[str, float]:
    """Median seconds per step of the tiny-world trial: streaming loader vs pre-decoded batches (A/B interleaved)."""
    import yaml

    from eaglesearch.model import build_eagle, resolve_expert
    from eaglesearch.spec import ExpertSpec, TrialFactory
    from eaglesearch.spec.recipe import Recipe
    from eaglesearch.train import train
    from eaglesearch.trial.data import prepare_data, prepare_tokenizer
    from eaglesearch.trial.workspace import Workspace

    recipe_path = Path(__file__).resolve().parent.parent / "experiments" / "tiny_world.yaml"
    recipe = Recipe.model_validate(yaml.safe_load(recipe_path.read_text()))
    trial = TrialFactory(recipe, expert_resolver=resolve_expert).make(
        [ExpertSpec(name="clip"), ExpertSpec(name="sam")], {"train.steps": steps})
    workspace = Workspace.at(root / "tiny-world")
    data = prepare_data(trial.data, workspace)
    tok = prepare_tokenizer(trial, data, workspace)
    torch.manual_seed(0)
    model = build_eagle(trial.model, tok)
    model.cache_expert_features(trial.train.feature_cache_mb)
    stage = trial.train.joint_stages[-1].with_steps(steps)
    dataset = TrainDataset(data.train, tok, trial.data.image_size, model.num_visual_tokens, trial.data.max_length,
                           template=trial.data.template)

    def collate(b):
        return collate_train(b, tok.pad_token_id)

    def stream() -> BatchStream:
        return BatchStream(dataset, stage.batch_size, collate, seed=0, num_workers=workers)

    predecoded_stream = stream()
    predecoded = [next(predecoded_stream) for _ in range(steps)]
    predecoded_stream.close()
    train(model, iter(predecoded), stage)  # warm-up: the feature cache now holds every image of these steps

    def per_step(data) -> float:
        """Median seconds between consecutive steps after the first (the first waits for the workers to start,
        which the first-batch figures above report on their own)."""
        marks: list[float] = []
        train(model, data, stage, on_step=lambda _done: marks.append(time.perf_counter()))
        return statistics.median(b - a for a, b in pairwise(marks))

    streamed, cached = [], []
    for _ in range(repeats):
        s = stream()
        streamed.append(per_step(s))
        s.close()
        cached.append(per_step(iter(predecoded)))
    return {"streamed_s": statistics.median(streamed), "predecoded_s": statistics.median(cached),
            "ratio": statistics.median(streamed) / statistics.median(cached), "workers": workers,
            "image_size": trial.data.image_size, "batch_size": stage.batch_size}


# ------------------------------------------------------------------------------------------------- driver

def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--sizes", type=int, nargs="+", default=[448, 1024])
    parser.add_argument("--workers", type=int, default=2, help="loader workers for the index/first-batch/RSS runs")
    parser.add_argument("--batches", type=int, default=8, help="batches taken per corpus run")
    parser.add_argument("--throughput-batches", type=int, default=12)
    parser.add_argument("--step-workers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only-step", action="store_true", help="only the tiny-world step-time comparison")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--distinct", type=int, default=64)
    parser.add_argument("--root", type=Path, default=Path("/tmp/eaglesearch-jpeg"))
    parser.add_argument("--no-step", action="store_true", help="skip the tiny-world step-time comparison")
    parser.add_argument("--one", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.root, args.one[0], args.one[1], args.workers, args.batches)))
        return
    if args.rate:
        print(json.dumps({"rate": throughput(args.root, args.rate[0], args.rate[1], args.throughput_batches)}))
        return

    if args.only_step:
        args.records, args.sizes = [], []
    start = time.perf_counter()
    for records in sorted({1000, *args.records}):
        corpus(args.root, records, args.distinct)
    tokenizer(args.root)
    print(f"corpora under {args.root}: {args.distinct} distinct 640x480 JPEGs, one hard link per record "
          f"({time.perf_counter() - start:.1f}s to write); {os.cpu_count()} CPUs; torch {torch.__version__}")
    common = ["--root", str(args.root), "--workers", str(args.workers), "--batches", str(args.batches),
              "--throughput-batches", str(args.throughput_batches), "--distinct", str(args.distinct)]
    for size in args.sizes:
        rows = [_child([*common, "--one", str(n), str(size)]) for n in args.records]
        if not rows:
            continue
        small = rows[0]
        for r in rows:
            print(f"[{size:4d} px] {r['records']:>7,} records: index {r['index_s']:6.2f}s, first batch "
                  f"{r['first_batch_s']:5.2f}s ({args.workers} workers); RSS after {args.batches} batches "
                  f"{r['rss_mb']:6.0f} MB ({r['rss_mb'] / small['rss_mb']:.2f}x), peak {r['peak_rss_mb']:6.0f} MB "
                  f"({r['peak_rss_mb'] / small['peak_rss_mb']:.2f}x the {small['records']:,}-record run; "
                  f"{r['base_rss_mb']:.0f} MB before the index); each worker's private memory "
                  f"{r['worker_private_mb']:.0f} MB")
    for size in args.sizes:
        rates = {w: _child([*common, "--rate", str(size), str(w)])["rate"] for w in (1, 2)}
        print(f"[{size:4d} px] decode throughput: 1 worker {rates[1]:6.1f} img/s, 2 workers {rates[2]:6.1f} img/s "
              f"(scaling {rates[2] / rates[1]:.2f}x), {BATCH}-image batches")
    for workers in [] if args.no_step else args.step_workers:
        torch.set_num_threads(1)
        r = step_time(args.root, args.steps, args.repeats, workers)
        print(f"tiny-world trial ({r['image_size']} px, batch {r['batch_size']}, 1 torch thread): "
              f"{r['streamed_s'] * 1000:.1f} ms/step streaming ({r['workers']} workers) vs "
              f"{r['predecoded_s'] * 1000:.1f} ms/step on pre-decoded tensors: ratio {r['ratio']:.3f} "
              f"(median step after the first, median of {args.repeats} runs of {args.steps} steps)")


if __name__ == "__main__":
    main()
