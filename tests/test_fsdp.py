"""FSDP2 (eaglesearch.train.fsdp): 2 gloo ranks holding shards of the model reproduce the 1-process loss curve
and weights, clip by the global gradient norm, and a killed sharded run resumes from its gathered checkpoint."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pickle
import time
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
from eaglesearch.train import (
    batches,
    fsdp,
    train,
)
from eaglesearch.train.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from eaglesearch.train.distributed import WorldInfo, destroy_process_group, free_port, init_process_group

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random"),
                         ExpertSpec(name="sam", preset="tiny_random", freeze=True)), grid=8, lm=TINY_LM)
# grad_clip 0.5: the gradient norm of these first steps is above it, so clipping is active and must use the global
# norm of the sharded gradients to match one process.
TRAIN = TrainSpec(steps=4, batch_size=8, lr=1e-3, warmup_ratio=0.0, log_every=1, grad_clip=0.5).stages[0]
MICRO = TRAIN.model_copy(update={"micro_batch_size": 2})
RESUMED = TRAIN.model_copy(update={"steps": 6, "checkpoint_every": 2})
KILL_AFTER = 4  # the killed run dies once its checkpoint of this step is on disk
SEED = 3
DATA = SyntheticDataSpec(tasks=("count", "color"), train_per_task=20, eval_per_task=2, image_size=128)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic dataset and a tokenizer cached on disk, so spawned ranks load the very same one."""
    root = tmp_path_factory.mktemp("fsdp")
    data = write_synthetic(DATA, root / "ds")
    train_samples = read_llava_json(data.train_json, data.image_folder)
    load_tokenizer(TokenizerSpec(vocab_size=400), lambda: training_corpus(train_samples), cache_dir=root / "tok")
    return root / "ds", root / "tok"


def _model_and_stream(ds_root: Path, tok_dir: Path, spec: StageSpec):
    torch.set_num_threads(1)
    data = write_synthetic(DATA, ds_root)  # already there: just the paths
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=400), None, cache_dir=tok_dir)
    torch.manual_seed(0)
    model = build_eagle(SPEC, tokenizer)
    dataset = TrainDataset(samples, tokenizer, 128, model.num_visual_tokens, max_length=128)
    return model, batches(dataset, spec.batch_size, lambda b: collate_train(b, tokenizer.pad_token_id), SEED)


def _run(ds_root: Path, tok_dir: Path, world: WorldInfo | None, spec: StageSpec = TRAIN,
         plan: fsdp.ShardPlan | None = None, checkpoint_dir: Path | None = None,
         on_log=None) -> tuple[list[float], dict[str, torch.Tensor]]:
    model, stream = _model_and_stream(ds_root, tok_dir, spec)
    if world is not None:
        model = fsdp.shard_model(model, plan)
    stats = train(model, stream, spec, world=world, checkpoint_dir=checkpoint_dir, on_log=on_log)
    state = fsdp.full_state(model) if world is not None else model.state_dict()
    return stats.losses, {k: v.detach().clone() for k, v in state.items()}


def _die_once_saved(folder: Path, pattern: str, step: int) -> None:
    """Kill this process (no cleanup, like a real kill: the checkpoint on disk is all that survives) once a
    checkpoint matching ``folder/pattern`` holds ``step``. Rank 0 only: the other rank then fails in its next collective. Waiting
    for the file, not for a log line, keeps the kill after the write however the ranks are scheduled."""
    if torch.distributed.get_rank() != 0:
        return
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for path in folder.glob(pattern):
            try:
                saved = load_checkpoint(path)
            except (CheckpointError, FileNotFoundError):  # being replaced right now
                saved = None
            if saved is not None and saved.step >= step:
                os._exit(3)
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint of step {step} appeared at {folder / pattern} within 120 s")


def _kill_at(checkpoint_dir: Path):
    def on_log(step: int, _loss: float) -> None:
        if step + 1 == KILL_AFTER:
            _die_once_saved(checkpoint_dir, CHECKPOINT_NAME, KILL_AFTER)
    return on_log


def _worker(rank: int, world_size: int, port: int, ds_root: Path, tok_dir: Path, out: Path, job: str) -> None:
    world = init_process_group(rank, world_size, port=port, backend="gloo")
    try:
        results = {}
        if job == "curves":
            results["plain"] = _run(ds_root, tok_dir, world)
            results["micro"] = _run(ds_root, tok_dir, world, MICRO)
            # activation checkpointing recomputes the same numbers; bf16 is GPU-only and not compared here
            results["checkpointed"] = _run(ds_root, tok_dir, world, TRAIN, fsdp.ShardPlan(activation_checkpointing=True))
        elif job == "kill":
            _run(ds_root, tok_dir, world, RESUMED, checkpoint_dir=out / "ckpt",
                 on_log=_kill_at(out / "ckpt"))
        elif job == "resume":
            results["resumed"] = _run(ds_root, tok_dir, world, RESUMED, checkpoint_dir=out / "ckpt")
        if rank == 0:
            with open(out / f"{job}.pkl", "wb") as fh:
                pickle.dump(results, fh)
    finally:
        destroy_process_group()


def _spawn(out: Path, setup: tuple[Path, Path], job: str) -> dict:
    mp.spawn(_worker, args=(2, free_port(), *setup, out, job), nprocs=2, join=True)
    with open(out / f"{job}.pkl", "rb") as fh:
        return pickle.load(fh)


def _assert_same(got: tuple[list[float], dict[str, torch.Tensor]],
                 ref: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    torch.testing.assert_close(torch.tensor(got[0]), torch.tensor(ref[0]), rtol=1e-5, atol=0)
    assert got[1].keys() == ref[1].keys()
    for name, tensor in ref[1].items():  # AdamW on ~0 gradients: see tests/test_distributed.py for the atol
        torch.testing.assert_close(got[1][name], tensor, rtol=1e-5, atol=5e-6, msg=name)


@pytest.mark.slow  # spawns gloo ranks (a torch import each): tens of seconds on 2 cores
def test_two_sharded_ranks_reproduce_one_process(setup, tmp_path: Path) -> None:
    ranks = _spawn(tmp_path, setup, "curves")
    reference = _run(*setup, None)
    assert len(reference[0]) == TRAIN.steps and reference[0][0] > reference[0][-1]
    for kind in ("plain", "micro", "checkpointed"):
        _assert_same(ranks[kind], reference)


@pytest.mark.slow  # spawns gloo ranks (a torch import each): tens of seconds on 2 cores
def test_killed_sharded_run_resumes_from_its_checkpoint(setup, tmp_path: Path) -> None:
    with pytest.raises(mp.ProcessExitedException):
        _spawn(tmp_path, setup, "kill")
    saved = load_checkpoint(tmp_path / "ckpt" / CHECKPOINT_NAME)
    assert saved is not None and saved.step == KILL_AFTER and saved.meta["sharded"] is True
    # full tensors (not shards) keyed by parameter name, loadable by any world size
    plain = _model_and_stream(*setup, TRAIN)[0].state_dict()
    assert saved.model and all(tensor.shape == plain[name].shape for name, tensor in saved.model.items())
    assert not any(name.startswith("experts.sam.") for name in saved.model)  # frozen: rebuilt, not saved
    assert saved.optimizer["state"] and all(name in plain for name in saved.optimizer["state"])
    with pytest.raises(CheckpointError, match="written by an FSDP run and this one trains without FSDP"):
        _run(*setup, None, RESUMED, checkpoint_dir=tmp_path / "ckpt")

    resumed = _spawn(tmp_path, setup, "resume")["resumed"]
    reference = _run(*setup, None, RESUMED)
    _assert_same(resumed, reference)


def test_shard_units_are_expert_blocks_and_decoder_layers(setup) -> None:
    model, _ = _model_and_stream(*setup, TRAIN)
    units = fsdp.shard_units(model)
    expected = [*model.experts["clip"].freezable_blocks(), *model.experts["sam"].freezable_blocks(),
                *model.lm.model.layers]
    assert [id(u) for u in units] == [id(u) for u in expected] and len(units) > TINY_LM.num_layers
    assert fsdp.ShardPlan.for_device(torch.device("cpu")) == fsdp.ShardPlan(False, False)
    assert fsdp.ShardPlan.for_device(torch.device("cuda")) == fsdp.ShardPlan(True, True)
    with pytest.raises(RuntimeError, match="initialized process group"):
        fsdp.shard_model(model)


# ------------------------------------------------------------------------------------------- a whole trial

def _trial_worker(rank: int, world_size: int, port: int, root: Path, kill: bool) -> None:
    from eaglesearch.trial.run import run_trial_core
    from eaglesearch.trial.workspace import Workspace
    from tests.test_distributed import staged_trial

    def progress(message: str) -> None:  # rank 0 only; rank 1 then fails in its next collective
        if kill and "sft step 4/" in message:  # the message says step 4 ran; the kill waits for its checkpoint
            _die_once_saved(root / "scratch" / "trials", f"*/sft/{CHECKPOINT_NAME}", 4)

    world = init_process_group(rank, world_size, port=port, backend="gloo")
    try:
        outcome = run_trial_core(staged_trial(TRIAL_STAGES), Workspace.at(root), threads=1, progress=progress,
                                 world=world, parallelism="fsdp")
        if rank == 0:
            with open(root / "outcome.pkl", "wb") as fh:
                pickle.dump(outcome, fh)
    finally:
        destroy_process_group()


TRIAL_STAGES = [
    {"name": "prealign", "per_expert": True, "steps": 2, "batch_size": 4, "log_every": 1,
     "trainable": {"experts": "all", "projector": True, "lm": "none"}},
    {"name": "align", "data": "caption", "template": "plain", "steps": 2, "batch_size": 4, "log_every": 1,
     "trainable": {"experts": "none", "projector": True, "lm": "none"}},
    {"name": "sft", "steps": 6, "batch_size": 4, "log_every": 1, "checkpoint_every": 2},
]


@pytest.mark.slow
def test_killed_fsdp_trial_resumes_and_matches_one_process(tmp_path: Path) -> None:
    """A 2-rank FSDP trial (pre-align per expert → align → sft) killed in sft: the rerun reuses the pre-aligned
    experts written from gathered state, restores align from its ``done.pt``, resumes sft from its checkpoint,
    evaluates an unsharded copy on rank 0, and matches a 1-process run of the same trial."""
    from eaglesearch.artifacts import ArtifactStore
    from eaglesearch.train.stages import PREALIGNED
    from eaglesearch.trial.run import run_trial_core
    from eaglesearch.trial.workspace import Workspace
    from tests.test_distributed import staged_trial

    root = tmp_path / "fsdp"
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(_trial_worker, args=(2, free_port(), root, True), nprocs=2, join=True)
    assert ArtifactStore(Workspace.at(root).artifacts).count(PREALIGNED) == 2
    assert len(list((root / "scratch" / "trials").glob("*/align/done.pt"))) == 1
    assert len(list((root / "scratch" / "trials").glob(f"*/sft/{CHECKPOINT_NAME}"))) == 1
    mp.spawn(_trial_worker, args=(2, free_port(), root, False), nprocs=2, join=True)
    with open(root / "outcome.pkl", "rb") as fh:
        sharded = pickle.load(fh)
    single = run_trial_core(staged_trial(TRIAL_STAGES), Workspace.at(tmp_path / "one"), threads=1)
    assert single is not None

    assert sharded.metrics["train/fsdp"] == 1.0 and single.metrics["train/fsdp"] == 0.0
    by_name = {r.name: r for r in sharded.stages}
    assert by_name["sft"].resumed_from == 4
    assert [r.name for r in sharded.stages] == [r.name for r in single.stages]
    for two, one in zip(sharded.stages, single.stages, strict=True):
        assert [s for s, _ in two.losses] == [s for s, _ in one.losses], two.name
        assert [v for _, v in two.losses] == pytest.approx([v for _, v in one.losses], rel=1e-4, abs=1e-5)
    assert [p.scored.prediction for p in sharded.predictions] == [p.scored.prediction for p in single.predictions]
    assert sharded.objective == pytest.approx(single.objective, abs=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16 mixed precision under FSDP needs CUDA")
def test_gpu_plan_computes_in_bf16_and_keeps_fp32_master_weights(setup) -> None:
    """One nccl rank: the GPU plan (bf16 parameters in compute, activation checkpointing) trains with finite
    losses, the layers see bf16 weights in forward, and the sharded master weights stay float32."""
    init_process_group(0, 1, port=free_port(), backend="nccl")
    try:
        model, stream = _model_and_stream(*setup, TRAIN)
        model = fsdp.shard_model(model.cuda())
        seen: list[torch.dtype] = []
        layer = model.lm.model.layers[0]
        layer.register_forward_pre_hook(lambda module, _args: seen.append(module.mlp.up_proj.weight.dtype))
        stats = train(model, stream, TRAIN, world=WorldInfo(0, 1))
        assert all(torch.isfinite(torch.tensor(stats.losses))) and seen and set(seen) == {torch.bfloat16}
        assert {p.dtype for p in model.parameters()} == {torch.float32}
        assert all(v.dtype == torch.float32 for v in fsdp.full_state(model).values() if v.is_floating_point())
    finally:
        destroy_process_group()


def test_parallelism_comes_from_resources_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from eaglesearch.execution.worker_group import PARALLELISM_ENV, parallelism_for
    from eaglesearch.spec.search_space import ResourcesSpec

    monkeypatch.delenv(PARALLELISM_ENV, raising=False)
    assert parallelism_for(ResourcesSpec(gpus_per_trial=2, parallelism="fsdp")) == "fsdp"
    assert parallelism_for(ResourcesSpec(gpus_per_trial=2, parallelism="ddp")) == "ddp"
    assert parallelism_for(ResourcesSpec(gpus_per_trial=2)) == "ddp"  # auto: ddp until a memory plan decides
    assert parallelism_for(None) == "ddp"
    monkeypatch.setenv(PARALLELISM_ENV, "FSDP")
    assert parallelism_for(ResourcesSpec(parallelism="ddp")) == "fsdp"
    monkeypatch.setenv(PARALLELISM_ENV, "zero3")
    with pytest.raises(ValueError, match="must be ddp or fsdp"):
        parallelism_for(None)


def test_a_multi_worker_trial_fits_in_its_cpus_beside_the_tune_trial_driving_it() -> None:
    """Two workers of one CPU each beside the driver's reservation never fit a 2-CPU machine: Ray Train waited for
    them forever (found running a 2-worker search here). The workers share cpus_per_trial less the driver's share."""
    from eaglesearch.execution.worker_group import DRIVER_CPUS, cpus_per_worker
    from eaglesearch.spec.search_space import ResourcesSpec

    for cpus, workers in ((2, 2), (1, 2), (16, 8), (4, 3)):
        each = cpus_per_worker(ResourcesSpec(cpus_per_trial=cpus), workers)
        assert DRIVER_CPUS + workers * each <= cpus + 1e-9 and each >= DRIVER_CPUS
    assert cpus_per_worker(ResourcesSpec(cpus_per_trial=0.01), 4) == DRIVER_CPUS  # never zero: Ray needs a share
