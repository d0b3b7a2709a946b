"""Pretrained tiny components: keys, the shipped store, loading into a model, and bit-identical rebuilds."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from eaglesearch.artifacts import ArtifactStore  # noqa: E402
from eaglesearch.model import build_eagle  # noqa: E402
from eaglesearch.model.experts import build_expert  # noqa: E402
from eaglesearch.spec import ExpertSpec, ModelSpec  # noqa: E402
from eaglesearch.train.pretrained import (  # noqa: E402
    RECORD,
    SHIPPED_ROOT,
    TINY_EXPERT,
    WEIGHTS,
    WORLD_LM,
    WORLD_TOKENIZER_SPEC,
    PretrainedComponents,
    expert_payload,
    load_expert_state,
    rebuild,
    shipped_components,
)

ROOT = Path(__file__).resolve().parent.parent


def test_every_shipped_component_is_in_the_package() -> None:
    shipped = ArtifactStore(SHIPPED_ROOT)
    for kind, name, key in shipped_components():
        folder = shipped.get(kind, key)
        assert folder is not None, f"{kind}/{name} ({key}) is not shipped: run `eaglesearch pretrain`"
        if kind != "world_tokenizer":
            assert (folder / WEIGHTS).is_file() and json.loads((folder / RECORD).read_text())["steps"] > 0


def test_the_world_recipe_uses_the_shipped_lm_and_tokenizer() -> None:
    recipe = yaml.safe_load((ROOT / "experiments" / "tiny_world.yaml").read_text())
    model = ModelSpec(experts=({"name": "clip"},), **{k: recipe["model"][k] for k in ("lm", "tokenizer")})
    assert model.lm == WORLD_LM and model.tokenizer == WORLD_TOKENIZER_SPEC


def test_keys_follow_the_recipe_not_the_trial_resolution() -> None:
    base = expert_payload(ExpertSpec(name="clip", preset="tiny"))
    assert base is not None
    assert expert_payload(ExpertSpec(name="clip", preset="tiny", resolution=128)) == base
    assert expert_payload(ExpertSpec(name="clip", preset="tiny_random")) is None
    assert expert_payload(ExpertSpec(name="sam", preset="tiny")) != base


def test_a_model_loads_the_shipped_weights(tmp_path: Path) -> None:
    components = PretrainedComponents(ArtifactStore(tmp_path / "store"))
    tokenizer = components.tokenizer(WORLD_TOKENIZER_SPEC)
    spec = ModelSpec(experts=({"name": "clip"}, {"name": "sam", "preset": "tiny_random"}), lm=WORLD_LM,
                     tokenizer=WORLD_TOKENIZER_SPEC)
    model = build_eagle(spec, tokenizer, seed=0)
    random_clip = {k: v.clone() for k, v in model.experts["clip"].state_dict().items()}
    random_sam = {k: v.clone() for k, v in model.experts["sam"].state_dict().items()}
    components.load_into(model, spec)
    shipped = components.expert_state(ExpertSpec(name="clip", preset="tiny"))
    assert all(torch.equal(model.experts["clip"].state_dict()[k], v) for k, v in shipped.items())
    assert not all(torch.equal(model.experts["clip"].state_dict()[k], v) for k, v in random_clip.items())
    assert all(torch.equal(model.experts["sam"].state_dict()[k], v) for k, v in random_sam.items())  # random stays
    assert {r.source for r in components.records.values()} == {"shipped"}
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob(WEIGHTS))  # nothing built


def test_a_clip_at_another_resolution_gets_resampled_position_embeddings() -> None:
    components = PretrainedComponents(ArtifactStore(Path("/nonexistent-store")))
    state = components.expert_state(ExpertSpec(name="clip", preset="tiny"))
    expert = build_expert(ExpertSpec(name="clip", resolution=128))
    load_expert_state(expert, state)
    assert expert.backbone.pos_embed.shape[1] == 1 + 8 * 8
    assert torch.equal(expert.backbone.blocks[0].attn.qkv.weight, state["backbone.blocks.0.attn.qkv.weight"])


@pytest.mark.slow
def test_rebuilding_the_clip_expert_gives_the_shipped_weights(tmp_path: Path) -> None:
    """CPU training is deterministic for a fixed thread count: the recipe rebuilds the shipped file bit for bit."""
    kind, _, key = next(c for c in shipped_components() if c[1] == "clip")
    shipped = ArtifactStore(SHIPPED_ROOT).get(kind, key)
    threads = json.loads((shipped / RECORD).read_text())["threads"]
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rebuild(tmp_path, only=("clip",))
    finally:
        torch.set_num_threads(before)
    rebuilt = torch.load(tmp_path / TINY_EXPERT / key / WEIGHTS, weights_only=True)
    original = torch.load(shipped / WEIGHTS, weights_only=True)
    assert rebuilt.keys() == original.keys()
    assert all(torch.equal(rebuilt[k], original[k]) for k in original)
