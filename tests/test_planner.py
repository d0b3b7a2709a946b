"""`eaglesearch plan`: trial counts for every search space; paper-scale models sized on the meta device."""

from __future__ import annotations

from pathlib import Path

import pytest

from eaglesearch.app.plan import make_plan
from eaglesearch.model.validate import load_checked_search
from eaglesearch.search import planned_trials
from eaglesearch.trial.plan import measure_on_meta
from eaglesearch.trial.workspace import Workspace

EXPECTED_TRIALS = {
    "demo_greedy": [1, 3, 2], "paper_greedy_experts": [1, 4, 3, 2, 1], "tiny_greedy_experts": [1, 4, 3, 2, 1],
    "paper_fusion": [10], "tiny_fusion": [10], "paper_single_experts": [7], "tiny_single_experts": [7],
    "paper_clip_resolution": [10], "tiny_clip_resolution": [8], "paper_prealign": [4], "tiny_prealign": [4],
}


@pytest.mark.parametrize("name", sorted(EXPECTED_TRIALS))
def test_plan_counts_trials_without_building(repo: Path, tmp_path: Path, name: str) -> None:
    plan = make_plan(load_checked_search(repo / "search_spaces" / f"{name}.yaml"), Workspace.at(tmp_path), False)
    assert plan.trials_per_round == EXPECTED_TRIALS[name]


def test_paper_greedy_models_are_sized_on_meta(repo: Path) -> None:
    loaded = load_checked_search(repo / "search_spaces" / "paper_greedy_experts.yaml")
    plans = {p.label: p for p in (measure_on_meta(t) for t in planned_trials(loaded))}
    base = plans["clip@448+convnext@1024"]
    assert base.visual_tokens == 1024 and base.scale.startswith("meta")
    # CLIP ViT-L (~0.30B) + ConvNeXt-XXL (~0.85B) + projector 4096x(1024+3072) + 4096x4096 (~34M)
    assert 1.1e9 < base.params_vision < 1.3e9
    # Vicuna-7B dimensions, untied embeddings: ~6.7B
    assert 6.6e9 < base.params_total - base.params_vision < 6.8e9
    assert base.vision_gflops_per_image > 1000 and base.gflops_per_sample > base.vision_gflops_per_image
    with_sam = plans["clip@448+convnext@1024+sam@1024"]
    assert with_sam.vision_gflops_per_image > base.vision_gflops_per_image
    assert with_sam.params_vision > base.params_vision


@pytest.mark.slow
@pytest.mark.parametrize("name", ["paper_fusion", "paper_single_experts", "paper_clip_resolution"])
def test_every_paper_space_plans_on_meta(repo: Path, tmp_path: Path, name: str) -> None:
    plan = make_plan(load_checked_search(repo / "search_spaces" / f"{name}.yaml"), Workspace.at(tmp_path))
    assert len(plan.models) == plan.total_trials
    for model in plan.models:
        assert model.params_total > 6e9 and model.vision_gflops_per_image > 0 and model.est_train_s is None
    if name == "paper_fusion":
        tokens = {m.visual_tokens for m in plan.models}
        assert tokens == {1024, 2048, 3072}  # sequence append grows with the experts; the others keep 32x32


@pytest.mark.parametrize(("name", "experts"), [("tiny_prealign", ["clip@64", "convnext@128"]),
                                               ("paper_prealign", ["clip@448", "convnext@1024"]),
                                               ("tiny_fusion", [])])
def test_plan_lists_each_per_expert_artifact_once(repo: Path, tmp_path: Path, name: str,
                                                  experts: list[str]) -> None:
    """Pre-alignment is planned per distinct expert, not per trial; the freeze variants of paper_prealign share
    their artifacts, and an artifact already in the store is marked as such."""
    from eaglesearch.artifacts import ArtifactStore
    from eaglesearch.train.stages import PREALIGNED

    loaded = load_checked_search(repo / "search_spaces" / f"{name}.yaml")
    workspace = Workspace.at(tmp_path)
    plan = make_plan(loaded, workspace, False)
    assert sorted(a.expert.rstrip("*") for a in plan.artifacts) == experts
    assert {a.stage for a in plan.artifacts} <= {"prealign"} and not any(a.stored for a in plan.artifacts)
    if not plan.artifacts:
        return
    built = tmp_path / "built"
    built.mkdir()
    (built / "expert.pt").write_bytes(b"placeholder")
    ArtifactStore(workspace.artifacts).put(PREALIGNED, plan.artifacts[0].key, built, {"test": True})
    again = make_plan(loaded, workspace, False)
    assert [a.stored for a in again.artifacts] == [True] + [False] * (len(experts) - 1)
