"""Behaviour of the five fusion strategies (eaglesearch.model.fusions) and of validate_model.

Tiny experts on a 4×4 grid: clip@64 (4×4 map × 128, the low-resolution ViT query), convnext@128 (4×4 × 128) and
sam@128 (8×8 × 128, pixel-unshuffled to 4×4 × 512 on the grid; 8×8 is its high-resolution map), with a tiny Llama.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest
import torch

from eaglesearch.data import (
    TrainDataset,
    collate_train,
    read_llava_json,
    training_corpus,
    write_synthetic,
)
from eaglesearch.model import EagleModel, build_eagle, build_expert, load_tokenizer, validate_model
from eaglesearch.model.experts import VisionExpert
from eaglesearch.model.fusions import (
    FUSIONS,
    ChannelConcat,
    DeformableAttention,
    LlavaHR,
    MiniGemini,
    SequenceAppend,
    build_fusion,
    expert_tokens,
)
from eaglesearch.model.fusions.llava_hr import adapter_positions
from eaglesearch.model.fusions.maps import windows
from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec, SyntheticDataSpec, TokenizerSpec

torch.set_num_threads(1)

GRID = 4
LM = LanguageModelSpec(hidden_size=64, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=96)
CLIP = ExpertSpec(name="clip", resolution=64)
CONVNEXT = ExpertSpec(name="convnext", resolution=128)
SAM = ExpertSpec(name="sam", resolution=128)
FROZEN_SAM = SAM.model_copy(update={"freeze": True})
# tokens per image and fused width (before the shared projector) for clip@64 + convnext@128 + sam@128
EXPECTED = {
    "channel_concat": (16, 128 + 128 + 512),
    "sequence_append": (3 * 16, LM.hidden_size),
    "llava_hr": (16, 128),
    "mini_gemini": (16, 128),
    "deformable": (16, 128),
}
CLASSES = {"channel_concat": ChannelConcat, "sequence_append": SequenceAppend, "llava_hr": LlavaHR,
           "mini_gemini": MiniGemini, "deformable": DeformableAttention}


def spec(fusion: str, *experts: ExpertSpec, **update: object) -> ModelSpec:
    return ModelSpec(experts=experts or (CLIP, CONVNEXT, FROZEN_SAM), grid=GRID, fusion=fusion, lm=LM, **update)


def experts_of(model: EagleModel) -> list[VisionExpert]:
    return [e for e in model.experts.values() if isinstance(e, VisionExpert)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory):
    synthetic = SyntheticDataSpec(tasks=("count", "color"), train_per_task=12, eval_per_task=2, image_size=64)
    return write_synthetic(synthetic, tmp_path_factory.mktemp("synthetic") / "ds")


@pytest.fixture(scope="module")
def tokenizer(data):
    train = read_llava_json(data.train_json, data.image_folder)
    return load_tokenizer(TokenizerSpec(vocab_size=400), lambda: training_corpus(train))


@pytest.fixture(scope="module")
def samples(data):
    return read_llava_json(data.train_json, data.image_folder)[:4]


def batch_for(model: EagleModel, samples, tokenizer) -> dict[str, torch.Tensor]:
    ds = TrainDataset(samples, tokenizer, 64, model.num_visual_tokens, max_length=160)
    return collate_train([ds[i] for i in range(len(ds))], tokenizer.pad_token_id)


def build(model_spec: ModelSpec, tokenizer, seed: int = 0) -> EagleModel:
    torch.manual_seed(seed)
    return build_eagle(model_spec, tokenizer)


# ----------------------------------------------------------------------------------------- shapes and registry


def test_registry_covers_every_spec_fusion() -> None:
    assert set(FUSIONS) == set(EXPECTED) == {"channel_concat", "sequence_append", "llava_hr", "mini_gemini",
                                             "deformable"}


@pytest.mark.parametrize("fusion", list(EXPECTED))
def test_output_shape_and_token_count(fusion: str, tokenizer) -> None:
    model = build(spec(fusion), tokenizer)
    tokens, width = EXPECTED[fusion]
    assert isinstance(model.fusion, CLASSES[fusion])
    assert (model.fusion.num_tokens, model.fusion.out_dim, model.num_visual_tokens) == (tokens, width, tokens)
    assert model.fusion.owns_projection == (fusion == "sequence_append")
    assert isinstance(model.projector, torch.nn.Identity) == model.fusion.owns_projection
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        assert model.fusion(experts_of(model), images, GRID).shape == (2, tokens, width)
        assert model.encode_images(images).shape == (2, tokens, LM.hidden_size)
    with pytest.raises(ValueError, match="built for a 4×4 grid"):
        model.fusion(experts_of(model), images, 8)


@pytest.mark.parametrize("fusion", list(EXPECTED))
def test_param_counts_add_up_and_freeze_projector_freezes_fusion(fusion: str, tokenizer) -> None:
    model = build(spec(fusion), tokenizer)
    counts = model.param_counts()
    parts = sum(v for k, v in counts.items() if k.startswith("expert/")) + counts["fusion"] + counts["projector"]
    assert counts["total"] == parts + counts["lm"]
    assert (counts["fusion"] > 0) == (fusion != "channel_concat")
    assert (counts["projector"] == 0) == (fusion == "sequence_append")
    frozen = build(spec(fusion, freeze_projector=True), tokenizer).param_counts()
    assert frozen["trainable"] == counts["trainable"] - counts["fusion"] - counts["projector"]


def test_build_is_deterministic_with_a_fusion(tokenizer) -> None:
    states = [build(spec("deformable"), tokenizer, seed).state_dict() for seed in (3, 3, 4)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0] if k.startswith("fusion."))


# ------------------------------------------------------------------------------------ training and gradients


@pytest.mark.parametrize("fusion", list(EXPECTED))
def test_trains_and_gradients_reach_exactly_the_unfrozen_experts(fusion: str, tokenizer, samples) -> None:
    """15 AdamW steps on one fixed batch lower the loss; then every unfrozen expert (clip, convnext) gets gradients
    and the frozen one (sam) none. Checked after training so zero-initialised paths have opened."""
    model = build(spec(fusion), tokenizer).train()
    batch = batch_for(model, samples, tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses

    optimizer.zero_grad(set_to_none=True)
    model(**batch).loss.backward()
    for name in ("clip", "convnext"):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.experts[name].parameters()), name
    assert all(p.grad is None for p in model.experts["sam"].parameters())
    assert all(p.grad is not None for p in model.fusion.parameters())


def test_llava_hr_with_a_frozen_vit_trains_its_adapters_only(tokenizer, samples) -> None:
    frozen_clip = CLIP.model_copy(update={"freeze": True})
    model = build(spec("llava_hr", frozen_clip, CONVNEXT), tokenizer).train()
    batch = batch_for(model, samples, tokenizer)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(2):
        optimizer.zero_grad(set_to_none=True)
        model(**batch).loss.backward()
        optimizer.step()
    assert all(p.grad is None for p in model.experts["clip"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.experts["convnext"].parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.fusion.adapters.parameters())


# ------------------------------------------------------------------------------------------ zero-initialisation


def test_llava_hr_starts_as_the_plain_vit(tokenizer) -> None:
    model = build(spec("llava_hr", CLIP, CONVNEXT, SAM), tokenizer).eval()
    fusion, experts = model.fusion, experts_of(model)
    assert isinstance(fusion, LlavaHR) and fusion.positions == [1]  # tiny CLIP has 2 blocks
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    clip = experts[0]
    with torch.no_grad():
        slow = fusion.slow_map(experts, images)
        assert slow.shape == (2, 256, 8, 8)  # convnext 4×4 upsampled to sam's 8×8, channels concatenated
        plain = clip(clip.preprocess(images))
        assert torch.allclose(fusion.fast_map(clip, images, slow), plain, atol=1e-6)
        assert torch.allclose(fusion(experts, images, GRID), fusion.align(plain, slow), atol=1e-6)
        torch.nn.init.normal_(fusion.adapters[0].slow_proj.weight, std=0.1)  # open the injection
        assert not torch.allclose(fusion.fast_map(clip, images, slow), plain, atol=1e-3)


def test_deformable_starts_as_the_query_tokens(tokenizer) -> None:
    model = build(spec("deformable"), tokenizer).eval()
    fusion, experts = model.fusion, experts_of(model)
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        query = expert_tokens(experts[0], images, GRID)
        assert torch.equal(fusion(experts, images, GRID), query)
        torch.nn.init.normal_(fusion.out.weight, std=0.1)
        assert not torch.allclose(fusion(experts, images, GRID), query, atol=1e-3)


def test_deformable_samples_each_query_at_its_cell_centre(tokenizer) -> None:
    """With zero offsets every head reads its own channels of the auxiliary map at the query's cell centre: on a map
    twice the grid's side that is the mean of the 2×2 window under the cell."""
    model = build(spec("deformable", CLIP, CONVNEXT), tokenizer)
    fusion = model.fusion
    assert isinstance(fusion, DeformableAttention)
    fusion.value = torch.nn.Identity()  # look at the raw map (aux and query widths are both 128 here)
    aux = torch.randn(2, 128, 2 * GRID, 2 * GRID)
    with torch.no_grad():
        sampled = fusion.sample(torch.randn(2, GRID**2, 128), aux)
    expected = torch.nn.functional.avg_pool2d(aux, 2).flatten(2).transpose(1, 2)
    assert torch.allclose(sampled, expected, atol=1e-5)


def test_adapter_positions_split_blocks_into_quarters() -> None:
    assert adapter_positions(24) == [6, 12, 18]
    assert adapter_positions(4) == [1, 2, 3]
    assert adapter_positions(3) == [1, 2]
    assert adapter_positions(2) == [1]
    assert adapter_positions(1) == [1]


def test_windows_are_co_located_with_grid_tokens() -> None:
    x = torch.randn(1, 3, 8, 8)
    w = windows(x, 4)  # p = 2
    assert w.shape == (1, 16, 4, 3)
    assert torch.equal(w[0, 0], x[0, :, :2, :2].flatten(1).T)  # cell (0,0): the top-left 2×2 pixels
    assert torch.equal(w[0, 5], x[0, :, 2:4, 2:4].flatten(1).T)  # cell (1,1)
    with pytest.raises(ValueError, match="cannot be cut"):
        windows(torch.randn(1, 3, 9, 9), 4)


def test_mini_gemini_queries_attend_only_their_own_window(tokenizer) -> None:
    fusion = build(spec("mini_gemini", CLIP, CONVNEXT), tokenizer).fusion
    assert isinstance(fusion, MiniGemini)
    tokens, aux = torch.randn(1, GRID**2, 128), torch.randn(1, 128, 2 * GRID, 2 * GRID)
    changed = aux.clone()
    changed[0, :, :2, :2] = torch.randn(128, 2, 2)  # the window of cell (0, 0) only
    with torch.no_grad():
        before, after = fusion.attend(tokens, windows(aux, GRID)), fusion.attend(tokens, windows(changed, GRID))
    assert not torch.allclose(before[0, 0], after[0, 0])
    assert torch.equal(before[0, 1:], after[0, 1:])


def test_mini_gemini_window_side_is_a_multiple_of_the_grid(tokenizer) -> None:
    assert build(spec("mini_gemini"), tokenizer).fusion.window == 2  # sam's 8×8 map over a 4×4 grid
    assert build(spec("mini_gemini", CLIP, CONVNEXT), tokenizer).fusion.window == 2  # 4×4: at least 2 (upsampled)


# ----------------------------------------------------------------------------------- single expert and validation


def test_single_expert_channel_concat_and_sequence_append_are_that_expert(tokenizer) -> None:
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    concat = build(spec("channel_concat", CLIP), tokenizer)
    append = build(spec("sequence_append", CLIP), tokenizer)
    with torch.no_grad():
        tokens = expert_tokens(experts_of(concat)[0], images, GRID)
        assert torch.equal(concat.fusion(experts_of(concat), images, GRID), tokens)
        clip = experts_of(append)[0]
        own = append.fusion.projectors["clip"](expert_tokens(clip, images, GRID))
        assert torch.equal(append.fusion(experts_of(append), images, GRID), own)
    assert concat.num_visual_tokens == append.num_visual_tokens == GRID**2


@pytest.mark.parametrize("fusion", ["llava_hr", "mini_gemini", "deformable"])
def test_injection_fusions_reject_a_single_expert(fusion: str, tokenizer) -> None:
    with pytest.raises(ValueError, match=f"'{fusion}' needs a low-resolution .*query expert first and at least one "
                                         "high-resolution expert; got clip@64"):
        validate_model(spec(fusion, CLIP))
    with pytest.raises(ValueError, match="at least one high-resolution expert"):
        build_eagle(spec(fusion, CLIP), tokenizer)


def test_validate_rejects_wrong_combinations() -> None:
    with pytest.raises(ValueError, match="first expert, which must be a ViT.*got 'convnext' first"):
        validate_model(spec("llava_hr", ExpertSpec(name="convnext", resolution=64), SAM))
    for fusion in ("mini_gemini", "deformable", "llava_hr"):
        with pytest.raises(ValueError, match="higher resolution than clip@64; not so for convnext@64"):
            validate_model(spec(fusion, CLIP, ExpertSpec(name="convnext", resolution=64), SAM))
    tiled = ExpertSpec(name="clip", resolution=64, resize="tile", tiles=2)
    with pytest.raises(ValueError, match="'channel_concat' cannot mix tiled and other experts"):
        validate_model(spec("channel_concat", tiled, CONVNEXT))
    with pytest.raises(ValueError, match="'mini_gemini' cannot take tiled experts"):
        validate_model(spec("mini_gemini", tiled, CONVNEXT))
    with pytest.raises(ValueError, match="unknown expert 'dino'"):
        validate_model(spec("channel_concat", ExpertSpec(name="dino")))


def test_validate_accepts_what_can_be_built() -> None:
    tiled = ExpertSpec(name="clip", resolution=64, resize="tile", tiles=2)
    for model_spec in (spec(f) for f in EXPECTED):
        validate_model(model_spec)
    validate_model(spec("channel_concat", tiled))
    validate_model(spec("sequence_append", tiled, CONVNEXT))
    paper = [ExpertSpec(name=n, preset="paper") for n in ("clip", "convnext", "sam")]
    for fusion in EXPECTED:
        validate_model(ModelSpec(experts=tuple(paper), grid=32, fusion=fusion))


def test_heads_must_divide_the_query_width() -> None:
    model_spec = spec("mini_gemini", CLIP, CONVNEXT, fusion_heads=3)
    torch.manual_seed(0)
    experts = [build_expert(e) for e in model_spec.experts]
    with pytest.raises(ValueError, match="fusion_heads 3 does not divide the query expert's token width 128"):
        build_fusion(model_spec, experts, LM.hidden_size)
