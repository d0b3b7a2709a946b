"""The stage pipeline: per-expert artifacts trained once and reused, stages in order, resume mid-stage."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
from pathlib import Path

import pytest
import torch

from eaglesearch.artifacts import ArtifactStore
from eaglesearch.data import (
    collate_train,
    read_llava_json,
    training_corpus,
    write_synthetic,
)
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.spec import (
    DataSpec,
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrainSpec,
    TrialSpec,
)
from eaglesearch.train.checkpoint import CHECKPOINT_NAME
from eaglesearch.train.stages import (
    DONE_FILE,
    PREALIGNED,
    StagePipeline,
    per_expert_payload,
    prealign_model,
)
from eaglesearch.trial.data import PreparedData, StageDatasets

torch.set_num_threads(1)

TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
SYNTH = SyntheticDataSpec(tasks=("count", "color"), train_per_task=12, eval_per_task=2, image_size=64)
STAGES = [
    {"name": "prealign", "per_expert": True, "trainable": {"experts": "all", "projector": True, "lm": "none"},
     "steps": 4, "batch_size": 6, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2},
    {"name": "align", "data": "caption", "template": "plain",
     "trainable": {"experts": "none", "projector": True, "lm": "none"}, "steps": 3, "batch_size": 6, "lr": 1e-3,
     "log_every": 1, "checkpoint_every": 2},
    {"name": "sft", "steps": 5, "batch_size": 6, "lr": 1e-3, "log_every": 1, "checkpoint_every": 2},
]


def make_trial(experts: tuple[str, ...], stages: list[dict] = STAGES, **expert_kw) -> TrialSpec:
    model = ModelSpec(experts=tuple(ExpertSpec(name=n, preset="tiny_random", resolution=64, **expert_kw) for n in experts),
                      grid=4, lm=TINY_LM, tokenizer=TokenizerSpec(vocab_size=300))
    return TrialSpec(model=model, data=DataSpec(synthetic=SYNTH, image_size=64, max_length=160),
                     train=TrainSpec.model_validate({"stages": stages}))


class Killed(RuntimeError):
    """Stands in for the process dying."""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    data = write_synthetic(SYNTH, tmp_path_factory.mktemp("synthetic") / "ds")
    train = read_llava_json(data.train_json, data.image_folder)
    captions = read_llava_json(data.caption_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=300), lambda: training_corpus([*train, *captions]))
    return PreparedData(train=train, benchmarks=[], captions=captions), tokenizer


def pipeline(trial: TrialSpec, prepared, root: Path, say=None) -> StagePipeline:
    data, tokenizer = prepared
    return StagePipeline(trial, tokenizer, StageDatasets(trial, data, tokenizer, lambda _m: None),
                         lambda b: collate_train(b, tokenizer.pad_token_id), store=ArtifactStore(root / "artifacts"),
                         scratch=root / "scratch", say=say)


def states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_per_expert_artifacts_are_trained_once_and_reused(prepared, tmp_path: Path) -> None:
    _, tokenizer = prepared
    first = pipeline(make_trial(("clip", "convnext")), prepared, tmp_path).run()
    names = [(r.name, r.status) for r in first.stages]
    assert names == [("prealign/clip", "trained"), ("prealign/convnext", "trained"), ("align", "trained"),
                     ("sft", "trained")]
    store = ArtifactStore(tmp_path / "artifacts")
    assert store.count(PREALIGNED) == 2

    # A trial with one known and one new expert, and a frozen-expert variant: only the new expert trains.
    second = pipeline(make_trial(("clip", "sam")), prepared, tmp_path).run()
    assert [(r.name, r.status) for r in second.stages[:2]] == [("prealign/clip", "reused"), ("prealign/sam", "trained")]
    frozen = pipeline(make_trial(("clip",), freeze=True), prepared, tmp_path).run()
    assert frozen.stages[0].status == "reused"  # the stage trains the whole expert: freeze is not in its key
    assert store.count(PREALIGNED) == 3

    # The reused record carries the builder's curve; the full model starts from the pre-aligned expert.
    assert second.stages[0].losses == first.stages[0].losses and second.stages[0].artifact_key == \
        first.stages[0].artifact_key
    path = store.get(PREALIGNED, first.stages[0].artifact_key)
    saved = torch.load(path / "expert.pt", weights_only=True)
    untrained = build_eagle(make_trial(("clip",)).model, tokenizer, seed=0).experts["clip"].state_dict()
    assert any(not torch.equal(saved[k], untrained[k]) for k in saved)  # stage 1 changed the expert
    record = json.loads((path / "stage.json").read_text())
    assert record["record"]["steps"] == 4 and record["stage"]["per_expert"] is True


def test_prealignment_keeps_the_lm_frozen_and_it_is_the_full_models_lm(prepared, tmp_path: Path) -> None:
    _, tokenizer = prepared
    trial = make_trial(("clip", "sam"))
    one = build_eagle(prealign_model(trial.model, trial.model.experts[1]), tokenizer, seed=trial.seed)
    full = build_eagle(trial.model, tokenizer, seed=trial.seed)
    assert states_equal(one.lm, full.lm)  # seeded per part: the LM does not depend on the experts beside it
    assert states_equal(one.experts["sam"], full.experts["sam"])
    p = pipeline(make_trial(("sam",), stages=STAGES[:1] + STAGES[2:]), prepared, tmp_path)
    lm_before = {k: v.clone() for k, v in full.lm.state_dict().items()}
    built: list = []
    original = p._train_expert

    def spy(*args, **kwargs):
        record = original(*args, **kwargs)
        built.append(record)
        return record

    p._train_expert = spy  # type: ignore[method-assign]
    p.run()
    assert built and built[0].trainable["lm"] == 0
    after = build_eagle(make_trial(("sam",)).model, tokenizer, seed=0).lm.state_dict()
    assert all(torch.equal(lm_before[k], after[k]) for k in after)


def test_key_ignores_freeze_flags_the_stage_overrides_but_not_what_it_trains(prepared) -> None:
    stage = make_trial(("clip",)).train.stages[0]
    a = per_expert_payload(make_trial(("clip",)), make_trial(("clip",)).model.experts[0], stage, None)
    b = per_expert_payload(make_trial(("clip",), freeze=True), make_trial(("clip",), freeze=True).model.experts[0],
                           stage, None)
    assert a == b
    longer = make_trial(("clip",), stages=[{**STAGES[0], "steps": 5}, *STAGES[1:]])
    c = per_expert_payload(longer, longer.model.experts[0], longer.train.stages[0], None)
    assert c != a
    res = make_trial(("clip",))
    hi = res.model.experts[0].model_copy(update={"resolution": 32})
    assert per_expert_payload(res, hi, stage, None) != a
    assert per_expert_payload(res, res.model.experts[0], stage, "previous") != a


def kill_at(message_part: str):
    def say(message: str) -> None:
        if message_part in message:
            raise Killed(message)
    return say


@pytest.mark.parametrize("where", ["stage 1/3 prealign/clip step 3/4", "stage 3/3 sft step 3/5"])
def test_killed_mid_stage_resumes_and_ends_equal_to_an_uninterrupted_run(prepared, tmp_path: Path,
                                                                         where: str) -> None:
    trial = make_trial(("clip",))
    reference = pipeline(trial, prepared, tmp_path / "a").run()

    with pytest.raises(Killed):
        pipeline(trial, prepared, tmp_path / "b", say=kill_at(where)).run()
    scratch = tmp_path / "b" / "scratch"
    assert list(scratch.rglob(CHECKPOINT_NAME)), "the killed stage left a checkpoint"
    if "sft" in where:
        assert (scratch / "trials" / trial.key / "align" / DONE_FILE).is_file()
    resumed = pipeline(trial, prepared, tmp_path / "b").run()

    stage = "prealign/clip" if "prealign" in where else "sft"
    record = next(r for r in resumed.stages if r.name == stage)
    assert record.resumed_from > 0 and record.resumed_from == 2  # last checkpoint before the kill (every 2 steps)
    assert [r.losses for r in resumed.stages] == [r.losses for r in reference.stages]
    assert {r.status for r in resumed.stages} == {"trained"}  # its own artifacts, even those built before the kill
    assert states_equal(resumed.model, reference.model)
    if "sft" in where:
        assert [r.resumed_from for r in resumed.stages] == [0, 0, 2]


def test_llava_source_reads_caption_pairs(tmp_path: Path, prepared) -> None:
    """The caption stage on LLaVA-format files: data.caption names a pre-training json the tests write."""
    from eaglesearch.trial.data import prepare_data
    from eaglesearch.trial.workspace import Workspace

    data, _ = prepared
    images = Path(data.train[0].image).parent.parent
    records = [{"id": f"c{i}", "image": str(Path(s.image).relative_to(images)),
                "conversations": [{"from": "human", "value": "<image>"}, {"from": "gpt", "value": "a red shape"}]}
               for i, s in enumerate(data.train[:5])]
    (tmp_path / "captions.json").write_text(json.dumps(records))
    sft = [{"id": "s0", "image": records[0]["image"], "conversations": [
        {"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "red"}]}]
    (tmp_path / "sft.json").write_text(json.dumps(sft))
    (tmp_path / "bench.json").write_text(json.dumps(sft))
    spec = DataSpec(source="llava", train={"json_path": str(tmp_path / "sft.json"), "image_folder": str(images)},
                    caption={"json_path": str(tmp_path / "captions.json"), "image_folder": str(images)},
                    eval={"b": {"kind": "llava", "path": str(tmp_path / "bench.json"), "image_folder": str(images)}},
                    image_size=64)
    prepared_llava = prepare_data(spec, Workspace.at(tmp_path / "ws"), captions=True)
    assert prepared_llava.captions is not None and len(prepared_llava.captions) == 5
    no_caption = spec.model_copy(update={"caption": None})
    with pytest.raises(ValueError, match="data.caption is not set"):
        prepare_data(no_caption, Workspace.at(tmp_path / "ws"), captions=True)
