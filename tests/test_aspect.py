"""Image policies (data.image: square | pad | dynamic): the reference algorithms, the spec, and variable tiles per
sample through data, model and evaluation."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from eaglesearch.data import TrainDataset, collate_train, load_image, read_llava_json, training_corpus
from eaglesearch.data.aspect import (
    ImagePolicy,
    apply_policy,
    candidate_grids,
    closest_grid,
    expand_to_square,
    fit_image_tokens,
    picture_size,
    stack_images,
)
from eaglesearch.data.scene import Scene, Shape, render
from eaglesearch.data.synthetic import write_synthetic
from eaglesearch.data.tasks import ASPECT_RANGE, OVAL_RATIO, TASKS
from eaglesearch.model import build_eagle, load_tokenizer
from eaglesearch.spec import (
    DataSpec,
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SyntheticDataSpec,
    TokenizerSpec,
    TrialSpec,
)
from eaglesearch.spec.aspect import ImagePolicySpec
from eaglesearch.trial.aspect import image_policy

torch.set_num_threads(1)

DYNAMIC = ImagePolicy(resize="dynamic", min_tiles=1, max_tiles=4, thumbnail=True)
TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64)
SPEC = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=32),), grid=2, lm=TINY_LM)


def _picture(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ------------------------------------------------------------------------------------- reference algorithms


@pytest.mark.parametrize(("size", "grid"), [
    ((800, 600), (3, 2)),     # 4:3 → 1.5 is the closest cols/rows within 6 tiles
    ((1792, 448), (4, 1)),    # 4:1 exactly
    ((448, 1344), (1, 3)),    # tall 1:3
    ((448, 448), (1, 1)),     # 1×1 vs 2×2 tie: area 448² is not above half of 2×2's, so the small grid stays
    ((1000, 1000), (2, 2)),   # the same tie with area 1e6 > 0.5·448²·4: the larger grid wins
])
def test_closest_grid_follows_internvl(size: tuple[int, int], grid: tuple[int, int]) -> None:
    assert closest_grid(*size, min_tiles=1, max_tiles=6, size=448) == grid


def test_candidate_grids_respect_bounds_and_order() -> None:
    grids = candidate_grids(2, 4)
    assert {g[0] * g[1] for g in grids} == {2, 3, 4}
    assert [g[0] * g[1] for g in grids] == sorted(g[0] * g[1] for g in grids)
    assert set(grids) == {(1, 2), (2, 1), (1, 3), (3, 1), (1, 4), (4, 1), (2, 2)}
    assert closest_grid(448, 448, 2, 4, 448) == (2, 2)  # min_tiles 2 rules out 1×1


def test_token_counts_match_internvl_and_eagle2() -> None:
    """InternVL 2.5's maximum: 12 tiles + thumbnail = 13 images of 256 tokens = 3328."""
    policy = ImagePolicy(resize="dynamic", max_tiles=12, thumbnail=True)
    assert policy.max_images * 256 == 3328
    assert policy.images_for(1792, 448, 448) == 5  # 4 tiles + thumbnail
    assert policy.images_for(448, 448, 448) == 1  # one tile: no thumbnail
    assert ImagePolicy(resize="dynamic", max_tiles=12, thumbnail=False).images_for(1792, 448, 448) == 4
    assert ImagePolicy(resize="pad").max_images == ImagePolicy().max_images == 1


def test_expand_to_square_centres_on_the_fill() -> None:
    wide = Image.new("RGB", (40, 20), (255, 255, 255))
    square = np.asarray(expand_to_square(wide, (122, 116, 104)))
    assert square.shape == (40, 40, 3)
    assert (square[:10] == (122, 116, 104)).all() and (square[30:] == (122, 116, 104)).all()
    assert (square[10:30] == 255).all()


def test_apply_policy_shapes_and_square_matches_the_old_loader(tmp_path: Path) -> None:
    picture = _picture(96, 32)
    path = tmp_path / "wide.png"
    picture.save(path)
    square = apply_policy(picture, ImagePolicy(), 32)
    old = torch.from_numpy(np.asarray(picture.resize((32, 32), Image.Resampling.BICUBIC)).copy()).permute(2, 0, 1)
    assert torch.equal(square, old) and torch.equal(load_image(path, 32), old)
    assert apply_policy(picture, ImagePolicy(resize="pad"), 32).shape == (3, 32, 32)
    tiles = apply_policy(picture, DYNAMIC, 32)
    assert tiles.shape == (4, 3, 32, 32)  # 3×1 grid + thumbnail
    # each tile is its third of the picture at native scale (96×32 is already 3·32 × 1·32); the thumbnail last
    assert torch.equal(tiles[1], torch.from_numpy(np.asarray(picture)[:, 32:64].copy()).permute(2, 0, 1))
    assert torch.equal(tiles[3], old)


def test_pad_keeps_proportions_and_square_does_not() -> None:
    """The planted aspect task's premise: a circle in a 1.5:1 image and an oval (2:1) in a 3:1 image look the same
    squashed (w/h 2/3), and different padded."""
    def shape_box(scene: Scene, policy: ImagePolicy) -> tuple[int, int]:
        pixels = apply_policy(render(scene, 64), policy, 64).numpy().astype(int)
        ink = (abs(pixels - pixels[:, :1, :1]) > 60).any(axis=0)  # the shape, not bicubic's faint halo
        rows, cols = np.nonzero(ink)
        return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)

    circle = Scene((240, 240, 240), (Shape("circle", "red", 20, 20, 24),), width=96)
    oval = Scene((240, 240, 240), (Shape("oval", "red", 40, 20, 24, width=48),), width=192)
    sw_c, sh_c = shape_box(circle, ImagePolicy())
    sw_o, sh_o = shape_box(oval, ImagePolicy())
    assert abs(sw_c - sw_o) <= 1 and abs(sh_c - sh_o) <= 1
    pw_c, ph_c = shape_box(circle, ImagePolicy(resize="pad", fill=(240, 240, 240)))
    pw_o, ph_o = shape_box(oval, ImagePolicy(resize="pad", fill=(240, 240, 240)))
    assert abs(pw_c / ph_c - 1) < 0.15 and abs(pw_o / ph_o - 2) < 0.3


def test_fit_image_tokens_and_stack_images() -> None:
    ids, labels = fit_image_tokens([1, 9, 9, 9, 2], [-100, -100, -100, -100, 2], image_id=9, tokens=5)
    assert ids == [1, 9, 9, 9, 9, 9, 2] and labels == [-100] * 6 + [2]
    assert fit_image_tokens([1, 2], [1, 2], 9, 4) == ([1, 2], [1, 2])
    stacked = stack_images([torch.ones(2, 3, 4, 4, dtype=torch.uint8), torch.ones(1, 3, 4, 4, dtype=torch.uint8)])
    assert stacked.shape == (2, 2, 3, 4, 4) and int(stacked[1, 1].sum()) == 0
    with pytest.raises(ValueError, match="same image policy"):
        stack_images([torch.ones(3, 4, 4), torch.ones(1, 3, 4, 4)])


# --------------------------------------------------------------------------------------------------- spec


def test_spec_default_keeps_trial_keys_and_dumps_round_trip() -> None:
    plain = TrialSpec(model=SPEC)
    assert TrialSpec(model=SPEC, data=DataSpec(image="square")).key == plain.key
    assert "image" not in plain.model_dump(mode="json")["data"]
    for policy in ("pad", {"resize": "dynamic", "max_tiles": 4}, {"resize": "pad", "pad_color": [1, 2, 3]}):
        trial = TrialSpec(model=SPEC, data=DataSpec(image=policy))
        assert trial.key != plain.key
        assert TrialSpec.model_validate_json(trial.model_dump_json()) == trial
    assert DataSpec(image="pad").model_dump(mode="json")["image"] == {"resize": "pad"}


@pytest.mark.parametrize(("policy", "message"), [
    ({"resize": "pad", "max_tiles": 4}, "max_tiles only applies to resize: dynamic"),
    ({"resize": "square", "min_tiles": 2, "thumbnail": False}, "min_tiles, thumbnail only apply to resize: dynamic"),
    ({"resize": "dynamic", "pad_color": [0, 0, 0]}, "pad_color only applies to resize: pad"),
    ({"resize": "dynamic", "min_tiles": 5, "max_tiles": 4}, "min_tiles .5. is above max_tiles .4."),
    ({"resize": "pad", "pad_color": [0, 0, 300]}, "0 to 255"),
])
def test_spec_mistakes_are_named(policy: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ImagePolicySpec.model_validate(policy)


def test_pad_colour_defaults_to_llavas_expand2square_colour() -> None:
    trial = TrialSpec(model=SPEC, data=DataSpec(image="pad"))
    assert image_policy(trial).fill == (122, 116, 104)  # int(255 · CLIP mean), as LLaVA's expand2square
    other = TrialSpec(model=SPEC.model_copy(update={"experts": (ExpertSpec(name="convnext"),)}), data=trial.data)
    assert image_policy(other).fill == image_policy(trial).fill  # whatever the experts: per-expert artifacts agree
    explicit = TrialSpec(model=SPEC, data=DataSpec(image={"resize": "pad", "pad_color": [1, 2, 3]}))
    assert image_policy(explicit).fill == (1, 2, 3)


# ------------------------------------------------------------------------------- variable tiles end to end


@pytest.fixture(scope="module")
def wide(tmp_path_factory: pytest.TempPathFactory):
    spec = SyntheticDataSpec(tasks=("aspect",), train_per_task=6, eval_per_task=3, image_size=32)
    data = write_synthetic(spec, tmp_path_factory.mktemp("aspect") / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    tokenizer = load_tokenizer(TokenizerSpec(vocab_size=120), lambda: training_corpus(samples))
    torch.manual_seed(0)
    model = build_eagle(SPEC, tokenizer).eval()
    for module in model.projector.modules():  # visible visual tokens: the checks below compare their effect
        if isinstance(module, torch.nn.Linear):
            torch.nn.init.normal_(module.weight, std=0.5)
    return data, samples, tokenizer, model


def test_dynamic_dataset_gives_each_sample_its_own_tiles(wide) -> None:
    _, samples, tokenizer, model = wide
    ds = TrainDataset(samples, tokenizer, 32, model.num_visual_tokens, max_length=160, image_policy=DYNAMIC)
    per = model.num_visual_tokens
    counts = []
    for i in range(len(ds)):
        item = ds[i]
        with Image.open(samples[i].image) as picture:
            expected = DYNAMIC.images_for(*picture.size, 32)
        assert item["images"].shape[0] == expected
        assert int((item["input_ids"] == model.image_token_id).sum()) == expected * per
        counts.append(expected)
    assert len(set(counts)) > 1  # the data really varies, so the batch below mixes tile counts


def test_padded_batch_equals_each_sample_alone(wide) -> None:
    """Padding tiles and rows change nothing: each sample's loss in a mixed batch equals its loss alone."""
    _, samples, tokenizer, model = wide
    ds = TrainDataset(samples, tokenizer, 32, model.num_visual_tokens, max_length=160, image_policy=DYNAMIC)
    items = [ds[i] for i in range(len(ds))]
    batch = collate_train(items, tokenizer.pad_token_id)
    assert batch["images"].dim() == 5
    with torch.no_grad():
        logits = model(batch["images"], batch["input_ids"], batch["attention_mask"]).logits
        for row, item in enumerate(items):
            one = collate_train([item], tokenizer.pad_token_id)
            alone = model(one["images"], one["input_ids"], one["attention_mask"]).logits[0]
            n = item["input_ids"].shape[0]
            assert torch.allclose(logits[row, :n], alone, atol=1e-4)
        # noise in the padding slots changes nothing; noise in a real tile changes that row
        tiles = [item["images"].shape[0] for item in items]
        short = tiles.index(min(tiles))
        noisy = batch["images"].clone()
        noisy[short, tiles[short]:] = torch.randint(0, 256, noisy[short, tiles[short]:].shape, dtype=torch.uint8)
        assert torch.equal(model(noisy, batch["input_ids"], batch["attention_mask"]).logits, logits)
        noisy[short, 0] = torch.randint(0, 256, noisy[short, 0].shape, dtype=torch.uint8)
        changed = model(noisy, batch["input_ids"], batch["attention_mask"]).logits
        assert not torch.allclose(changed[short], logits[short])


def test_too_many_image_tokens_for_the_stack_is_explained(wide) -> None:
    _, samples, tokenizer, model = wide
    ds = TrainDataset(samples[:2], tokenizer, 32, model.num_visual_tokens, max_length=160, image_policy=DYNAMIC)
    batch = collate_train([ds[0], ds[1]], tokenizer.pad_token_id)
    ids = batch["input_ids"].clone()
    ids[0, (ids[0] == model.image_token_id).nonzero()[0]] = 7  # one image token short
    with pytest.raises(ValueError, match="sample 0 of the batch has .* image tokens"):
        model(batch["images"], ids, batch["attention_mask"])


def test_dynamic_token_budget_is_checked_for_the_worst_case(wide) -> None:
    """A sample is rejected when its text plus max_images·visual tokens cannot fit, whatever its own tiles."""
    _, samples, tokenizer, model = wide
    worst = DYNAMIC.max_images * model.num_visual_tokens
    with pytest.raises(ValueError, match="over max_length"):
        TrainDataset(samples[:1], tokenizer, 32, model.num_visual_tokens, max_length=worst, image_policy=DYNAMIC)


def test_evaluation_uses_the_policy_and_batching_changes_nothing(wide) -> None:
    from eaglesearch.evaluate.benchmarks import load_benchmark
    from eaglesearch.evaluate.run import item_image, predict
    from eaglesearch.trial.data import make_benchmark

    data, _, tokenizer, model = wide
    items = load_benchmark("synthetic", data.eval_json["aspect"], data.image_folder)
    assert len({item_image(item, 32, DYNAMIC).shape[0] for item in items}) > 1  # batches mix tile counts
    generate = make_benchmark("aspect", "synthetic", items, scoring="generate")
    likelihood = replace(generate, scoring="likelihood", candidates={i.id: ("circle", "oval") for i in items})
    for bench in (generate, likelihood):
        together = predict(model, tokenizer, bench, image_size=32, batch_size=3, max_new_tokens=2, policy=DYNAMIC)
        alone = predict(model, tokenizer, bench, image_size=32, batch_size=1, max_new_tokens=2, policy=DYNAMIC)
        assert [r.scored.prediction for r in together] == [r.scored.prediction for r in alone]


def test_aspect_task_is_wide_and_deterministic() -> None:
    first = TASKS["aspect"](random.Random("x"), 64)
    again = TASKS["aspect"](random.Random("x"), 64)
    assert first == again
    rng = random.Random(1)
    items = [TASKS["aspect"](rng, 64) for _ in range(40)]
    widths = [scene.width for scene, _, _ in items]
    low, high = ASPECT_RANGE
    assert all(w is not None and 64 * low <= w <= 64 * high for w in widths)
    assert {answer for _, _, answer in items} == {"circle", "oval"}
    for scene, _, answer in items:
        shape = scene.shapes[0]
        assert shape.x + (shape.width or shape.size) <= scene.width  # the whole shape is in the picture
        assert (shape.width or shape.size) == shape.size * (OVAL_RATIO if answer == "oval" else 1)


# --------------------------------------------------------------------------------------------- preflight, plan

RECIPE = """\
name: pf
scale: tiny_random
model:
  grid: 4
  experts: [{name: clip, resolution: 32}]
  lm: {kind: tiny_llama, hidden_size: 32, num_layers: 1, num_heads: 2, num_kv_heads: 1, intermediate_size: 64}
data: {image_size: 32, max_length: 96, synthetic: {tasks: [aspect], train_per_task: 8, eval_per_task: 2,
        image_size: 32}}
train: {steps: 1, batch_size: 2}
"""


def _space(tmp_path: Path, max_length: int) -> Path:
    (tmp_path / "experiments").mkdir(exist_ok=True)
    (tmp_path / "experiments" / "pf.yaml").write_text(RECIPE)
    path = tmp_path / "s.yaml"
    path.write_text(f"name: g\nrecipe: experiments/pf.yaml\noverrides: {{data: {{max_length: {max_length}}}}}\n"
                    "strategy: {kind: grid, factors: {data.image: [square, pad, {resize: dynamic, max_tiles: 3}]}}\n")
    return path


def test_preflight_checks_the_worst_case_of_dynamic_tiles(tmp_path: Path) -> None:
    """16 visual tokens per image (grid 4); dynamic with 3 tiles + thumbnail needs 64 before any text, square and pad
    16: only the dynamic trial is refused, naming its images per picture."""
    from eaglesearch.app.plan import preflight_search
    from eaglesearch.model.validate import load_checked_search
    from eaglesearch.spec import SpecError
    from eaglesearch.trial.preflight import min_text_tokens

    need = 4 * 16 + min_text_tokens("chatml")
    with pytest.raises(SpecError) as err:
        preflight_search(load_checked_search(_space(tmp_path, need - 1)))
    (issue,) = err.value.issues
    assert f"at least {need}" in issue.message and "of 1 trial(s)" in issue.message
    assert "up to 4 images per picture (data.image: dyn1-3+t)" in issue.message
    preflight_search(load_checked_search(_space(tmp_path, need)))


def test_plan_reports_the_tile_distribution(tmp_path: Path) -> None:
    from eaglesearch.trial.aspect import picture_counts

    trial = TrialSpec(model=SPEC, data=DataSpec(image_size=32, image={"resize": "dynamic", "max_tiles": 3},
                                                synthetic={"tasks": ["aspect"], "train_per_task": 12,
                                                           "image_size": 32}))
    data = write_synthetic(trial.data.synthetic, tmp_path / "ds")
    samples = read_llava_json(data.train_json, data.image_folder)
    counts = picture_counts(trial, samples)
    assert counts is not None and counts.sampled == counts.total == 12
    policy = image_policy(trial)
    expected = [policy.images_for(*picture_size(s.image), 32) for s in samples]
    assert counts.mean == pytest.approx(sum(expected) / len(expected))
    assert counts.most == max(expected) <= 4 and "mean" in counts.describe()
    assert picture_counts(TrialSpec(model=SPEC, data=DataSpec(image="pad")), samples) is None  # one image each


def test_cost_scales_per_sample_numbers_by_the_mean_images_per_picture() -> None:
    from eaglesearch.model.cost import ModelCost

    params = {"total": 10, "trainable": 5, "fusion": 0, "projector": 1, "lm": 4}
    one = ModelCost(params=params, visual_tokens=64, vision_flops_per_image=2_000_000_000, flops_per_sample=None)
    tiled = ModelCost(params=params, visual_tokens=64, vision_flops_per_image=2_000_000_000, flops_per_sample=None,
                      images_per_sample=2.5)
    assert "cost/images_per_sample" not in one.as_metrics()
    assert tiled.as_metrics()["cost/images_per_sample"] == 2.5
    assert tiled.as_metrics()["cost/visual_tokens"] == 2.5 * one.as_metrics()["cost/visual_tokens"] == 160
    assert tiled.as_metrics()["cost/vision_gflops"] == pytest.approx(5.0)
