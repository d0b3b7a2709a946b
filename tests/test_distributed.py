"""Data-parallel training (eaglesearch.train.distributed): k workers, with or without gradient accumulation,
reproduce the 1-worker full-batch run exactly."""

from __future__ import annotations

import math
import os
import signal

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from eaglesearch.data import TrainDataset, collate_train, read_llava_json, training_corpus, write_synthetic
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.spec import (
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrainSpec,
)
from eaglesearch.spec.train import StageSpec
from eaglesearch.train import batches, train
from eaglesearch.train.distributed import (
    WorldInfo,
    answer_tokens,
    destroy_process_group,
    free_port,
    init_process_group,
    shard_batch,
)

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random"),
                         ExpertSpec(name="sam", preset="tiny_random", freeze=True)), grid=8, lm=TINY_LM)
TRAIN = TrainSpec(steps=4, batch_size=8, lr=1e-3, warmup_ratio=0.0, log_every=1).stages[0]
MICRO = TRAIN.model_copy(update={"micro_batch_size": 2})
SEED = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic dataset and a tokenizer cached on disk, so spawned ranks load the very same one."""
    root = tmp_path_factory.mktemp("dist")
    data = write_synthetic(SyntheticDataSpec(tasks=("count", "color"), train_per_task=20, eval_per_task=2,
                                             image_size=128), root / "ds")
    train_samples = read_llava_json(data.train_json, data.image_folder)
    load_tokenizer(TokenizerSpec(vocab_size=400), lambda: training_corpus(train_samples), cache_dir=root / "tok")
    return root / "ds", root / "tok"


def _run(ds_root: Path, tok_dir: Path, world: WorldInfo | None,
         spec: StageSpec = TRAIN) -> tuple[list[float], dict[str, torch.Tensor]]:
    torch.set_num_threads(1)
    data = write_synthetic(SyntheticDataSpec(tasks=("count", "color"), train_per_task=20, eval_per_task=2,
                                             image_size=128), ds_root)  # already there: just the paths
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=400), None, cache_dir=tok_dir)
    torch.manual_seed(0)
    model = build_eagle(SPEC, tokenizer)
    dataset = TrainDataset(samples, tokenizer, 128, model.num_visual_tokens, max_length=128)
    stream = batches(dataset, spec.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), SEED)
    stats = train(model, _uneven(stream), spec, world=world)
    return stats.losses, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _uneven(stream):
    """Ignore the answers of the first two rows: rank 0's micro-batch then holds half the answer tokens of rank
    1's, so a mean of per-rank means would differ from the 1-process mean and the test below would catch it."""
    for batch in stream:
        labels = batch["labels"].clone()
        labels[:2] = -100
        halves = [answer_tokens(shard_batch({"labels": labels}, WorldInfo(r, 2))["labels"]) for r in range(2)]
        assert halves[0] < halves[1], halves
        yield {**batch, "labels": labels}


def _worker(rank: int, world_size: int, port: int, ds_root: Path, tok_dir: Path, out: Path) -> None:
    world = init_process_group(rank, world_size, port=port, backend="gloo")
    try:
        losses, state = _run(ds_root, tok_dir, world)
        torch.save({"losses": losses, "state": state}, out / f"rank{rank}.pt")
        losses, state = _run(ds_root, tok_dir, world, MICRO)  # each rank's 4 rows as 2 micro-batches of 2
        torch.save({"losses": losses, "state": state}, out / f"micro{rank}.pt")
    finally:
        destroy_process_group()


def test_two_workers_reproduce_one_worker(setup, tmp_path: Path) -> None:
    ds_root, tok_dir = setup
    mp.spawn(_worker, args=(2, free_port(), ds_root, tok_dir, tmp_path), nprocs=2, join=True)
    ref_losses, ref_state = _run(ds_root, tok_dir, None)
    ranks = [torch.load(tmp_path / f"{kind}{r}.pt") for kind in ("rank", "micro") for r in range(2)]

    assert len(ref_losses) == TRAIN.steps
    for got in ranks:  # every rank reports the global loss and holds the same weights
        torch.testing.assert_close(torch.tensor(got["losses"]), torch.tensor(ref_losses), rtol=1e-5, atol=0)
    # AdamW divides by sqrt(v): for the odd weight whose gradient is ~0, the float rounding of the summed gradient
    # moves the update by up to ~1e-3 of an lr step (measured: 1 element of ~100k off by 1.2e-6, lr 1e-3), hence
    # the small atol next to rtol 1e-5.
    for name, ref in ref_state.items():
        for got in ranks:
            torch.testing.assert_close(got["state"][name], ref, rtol=1e-5, atol=5e-6, msg=name)
    for name, value in ranks[0]["state"].items():  # summed gradients are bitwise the same on every rank
        assert torch.equal(value, ranks[1]["state"][name]), name
        assert torch.equal(ranks[2]["state"][name], ranks[3]["state"][name]), name


def test_shard_batch_rows_and_indivisible_error() -> None:
    batch = {"input_ids": torch.arange(12).reshape(6, 2), "labels": torch.arange(6)}
    second = shard_batch(batch, WorldInfo(1, 3))
    assert second["input_ids"].tolist() == [[4, 5], [6, 7]]
    assert second["labels"].tolist() == [2, 3]
    with pytest.raises(ValueError, match="6 rows does not divide by the 4 workers"):
        shard_batch(batch, WorldInfo(0, 4))
    with pytest.raises(ValueError, match="invalid rank"):
        WorldInfo(2, 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 autocast and gradient checkpointing need CUDA")
def test_gpu_autocast_and_gradient_checkpointing(setup) -> None:
    from eaglesearch.train.distributed import autocast_for, prepare_model

    _, tok_dir = setup
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=400), None, cache_dir=tok_dir)
    torch.manual_seed(0)
    model = prepare_model(build_eagle(SPEC, tokenizer).cuda())
    assert model.lm.is_gradient_checkpointing
    with autocast_for(model):
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16 and torch.is_autocast_enabled("cuda")


PREALIGN_STAGE = {"name": "prealign", "per_expert": True, "steps": 2, "batch_size": 4, "log_every": 1,
                  "trainable": {"experts": "all", "projector": True, "lm": "none"}}
ALIGN_STAGE = {"name": "align", "data": "caption", "template": "plain", "steps": 1, "batch_size": 4,
               "trainable": {"experts": "none", "projector": True, "lm": "none"}}


def staged_trial(stages: list[dict]):
    """A whole trial of SPEC with these stages on a few synthetic count questions (captions included)."""
    from eaglesearch.spec import DataSpec, EvalSpec, TrialSpec

    return TrialSpec(model=SPEC, data=DataSpec(synthetic=SyntheticDataSpec(
        tasks=("count",), train_per_task=8, eval_per_task=2, image_size=128), max_length=192),
        train=TrainSpec.model_validate({"stages": stages}), eval=EvalSpec(batch_size=4, max_new_tokens=2), seed=1)


def _two_worker_trial(trial_json: str, workspace: str):
    """One trial on a fresh two-CPU Ray with two Ray Train workers: (outcome, the stage progress rank 0 relayed); the
    reason as a string when Ray cannot start here."""
    import ray

    from eaglesearch.execution.multi_worker import run_trial_multi_worker
    from eaglesearch.spec import TrialSpec
    from eaglesearch.trial.workspace import Workspace

    torch.set_num_threads(1)
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    except Exception as err:  # noqa: BLE001
        return f"Ray cannot start here: {err}"
    events = []
    try:
        outcome = run_trial_multi_worker(TrialSpec.model_validate_json(trial_json), Workspace.at(Path(workspace)),
                                         threads=1, workers=2, use_gpu=False, cpus_per_worker=0.5, name="train-test",
                                         stage_progress=events.append)
        return outcome, [(e.label, e.step, e.steps) for e in events]
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_torch_trainer_two_cpu_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray Train (V2) TorchTrainer, 2 gloo workers on CPU, Eagle's three stages: rank 0's outcome reaches the driver,
    both ranks build each pre-aligned expert together (stored once), and every stage's loss curve equals a 1-process
    run's with the same global batch."""
    pytest.importorskip("ray")
    pytest.importorskip("ray.train.torch")
    from eaglesearch.artifacts import ArtifactStore
    from eaglesearch.execution.worker_group import WORKERS_ENV, workers_per_trial
    from eaglesearch.train.stages import PREALIGNED
    from eaglesearch.trial.run import run_trial_core
    from eaglesearch.trial.workspace import Workspace

    monkeypatch.setenv(WORKERS_ENV, "2")
    assert workers_per_trial() == 2
    trial = staged_trial([PREALIGN_STAGE, ALIGN_STAGE, {"name": "sft", "steps": 2, "batch_size": 4, "log_every": 1}])
    # In this pytest process, after any earlier in-process Ray (RAY_AUTH_MODE is left as that Ray fixed it: changing
    # it here had every actor destroyed before it ran, tests/test_ray_auth.py).
    sigint = signal.getsignal(signal.SIGINT)
    ran = _two_worker_trial(trial.model_dump_json(), str(tmp_path / "ws"))
    assert signal.getsignal(signal.SIGINT) is sigint  # Ray Train's own handler was not left behind (Ctrl-C stays ours)
    if isinstance(ran, str):
        pytest.skip(ran)
    outcome, events = ran
    # rank 0's stage progress reached the trial process: every stage's last step, in order (its first, too)
    ends = [(label, step) for label, step, steps in events if step == steps]
    assert [label for label, _ in ends] == [r.name for r in outcome.stages], events
    assert all(any(lbl == label and step == 1 for lbl, step, _ in events) for label, _ in ends), events
    assert [step for step, _ in outcome.loss_history] == [0, 1]
    assert outcome.metrics["train/workers"] == 2.0
    assert outcome.metrics["train/loss_first"] == outcome.loss_history[0][1]
    assert outcome.predictions
    assert [(r.name, r.status) for r in outcome.stages] == [
        ("prealign/clip", "trained"), ("prealign/sam", "trained"), ("align", "trained"), ("sft", "trained")]
    assert ArtifactStore(Workspace.at(tmp_path / "ws").artifacts).count(PREALIGNED) == 2

    single = run_trial_core(trial, Workspace.at(tmp_path / "ws1"), threads=1)
    assert single is not None
    for two, one in zip(outcome.stages, single.stages, strict=True):
        assert two.name == one.name and [s for s, _ in two.losses] == [s for s, _ in one.losses]
        assert [v for _, v in two.losses] == pytest.approx([v for _, v in one.losses], rel=1e-4, abs=1e-5)
    # both ranks evaluated their share of the items; rank 0 gathered them back into the 1-process order
    assert [p.scored.item.id for p in outcome.predictions] == [p.scored.item.id for p in single.predictions]
    assert [p.scored.prediction for p in outcome.predictions] == [p.scored.prediction for p in single.predictions]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a single-GPU trial needs CUDA")
def test_single_gpu_trial_trains_and_evaluates_on_the_gpu(tmp_path: Path) -> None:
    """One process, one GPU: every stage trains on CUDA (bf16 autocast, gradient checkpointing) and the benchmarks
    are scored there."""
    from eaglesearch.trial.run import run_trial_core
    from eaglesearch.trial.workspace import Workspace

    trial = staged_trial([PREALIGN_STAGE,
                          {"name": "sft", "steps": 2, "batch_size": 4, "micro_batch_size": 2, "log_every": 1}])
    outcome = run_trial_core(trial, Workspace.at(tmp_path / "gpu"), threads=1)
    assert outcome is not None and outcome.predictions
    assert [r.name for r in outcome.stages] == ["prealign/clip", "prealign/sam", "sft"]
    assert all(math.isfinite(v) for r in outcome.stages for _, v in r.losses)
    assert outcome.metrics["cost/vision_gflops"] > 0
