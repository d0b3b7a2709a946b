"""A kept model as a folder (model/saved.py), loaded for use (export/), served by MLflow pyfunc, kept and pruned in
the record (tracking/winners.py), and the keep_best setting. The search that keeps its winner end to end, with the
export/predict commands and lmms-eval, is in tests/test_export_e2e.py."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image
from transformers import LlamaConfig, LlamaForCausalLM

import eaglesearch
from eaglesearch.data import training_corpus, write_synthetic
from eaglesearch.data.llava import read_llava_json
from eaglesearch.evaluate.benchmarks import load_benchmark
from eaglesearch.evaluate.likelihood import candidate_logprobs
from eaglesearch.evaluate.run import _prompt_ids, item_image, predict
from eaglesearch.export.pyfunc import _load_pyfunc
from eaglesearch.model import build_eagle, build_offline_tokenizer
from eaglesearch.model.saved import load_model_folder, save_model_folder
from eaglesearch.spec import (
    DataSpec,
    EvalSpec,
    ExpertSpec,
    LanguageModelSpec,
    ModelSpec,
    SearchSpace,
    SpecError,
    SyntheticDataSpec,
    TokenizerSpec,
    TrialSpec,
)
from eaglesearch.trial.data import make_benchmark

torch.set_num_threads(1)

# Untied: a random LM with tied embeddings repeats its last prompt token (a newline), which decodes to nothing.
TINY_LM = LanguageModelSpec(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1, intermediate_size=64,
                            tie_embeddings=False)
SYNTHETIC = SyntheticDataSpec(tasks=("count",), train_per_task=8, eval_per_task=6, image_size=64)


def trial_spec(lm: LanguageModelSpec = TINY_LM) -> TrialSpec:
    model = ModelSpec(experts=(ExpertSpec(name="clip", preset="tiny_random", resolution=64),), grid=4, lm=lm,
                      tokenizer=TokenizerSpec())
    return TrialSpec(model=model, data=DataSpec(source="synthetic", image_size=64, synthetic=SYNTHETIC),
                     eval=EvalSpec(batch_size=4, max_new_tokens=5))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    """A random-init model (its greedy answers are arbitrary tokens, so equal answers mean equal computation),
    saved to a folder, and the benchmark items the trial would have evaluated."""
    root = tmp_path_factory.mktemp("export")
    data = write_synthetic(SYNTHETIC, root / "data")
    train = read_llava_json(data.train_json, data.image_folder)
    tokenizer = build_offline_tokenizer(training_corpus(train), 300)
    trial = trial_spec()
    model = build_eagle(trial.model, tokenizer, seed=3).eval()
    folder = save_model_folder(model, tokenizer, trial, root / "saved")
    items = load_benchmark("synthetic", data.eval_json["count"], data.image_folder)
    return {"model": model, "tokenizer": tokenizer, "trial": trial, "folder": folder,
            "benchmark": make_benchmark("count", "synthetic", items), "root": root}


def test_folder_round_trip_keeps_every_weight(world) -> None:
    saved = load_model_folder(world["folder"])
    before, after = world["model"].state_dict(), saved.model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert saved.trial == world["trial"] and saved.manifest["key"] == world["trial"].key
    assert saved.tokenizer.get_vocab() == world["tokenizer"].get_vocab()


def test_tied_embeddings_are_stored_once_and_tied_again(tmp_path: Path, world) -> None:
    trial = trial_spec(TINY_LM.model_copy(update={"tie_embeddings": True}))
    model = build_eagle(trial.model, world["tokenizer"], seed=5)
    saved = load_model_folder(save_model_folder(model, world["tokenizer"], trial, tmp_path / "tied")).model
    lm = saved.lm
    assert lm.lm_head.weight.data_ptr() == lm.get_input_embeddings().weight.data_ptr()
    assert torch.equal(lm.lm_head.weight, model.lm.lm_head.weight)


def test_generate_answers_as_the_trials_evaluation(world) -> None:
    benchmark, trial = world["benchmark"], world["trial"]
    recorded = predict(world["model"], world["tokenizer"], benchmark, image_size=trial.data.image_size,
                       batch_size=trial.eval.batch_size, max_new_tokens=trial.eval.max_new_tokens)
    expected = [r.scored.prediction for r in recorded]
    assert any(expected), "the random model must answer something for the comparison to mean anything"
    winner = eaglesearch.load(world["folder"])
    paths = [item.image for item in benchmark.items]
    prompts = [item.prompt for item in benchmark.items]
    assert winner.generate(paths, prompts) == expected
    pil = [Image.open(p) for p in paths]
    assert winner.generate(pil, prompts, batch_size=1) == expected  # PIL images, unbatched: the same answers


def test_loglikelihood_equals_candidate_scoring(world) -> None:
    item = world["benchmark"].items[0]
    model, tokenizer, winner = world["model"], world["tokenizer"], eaglesearch.load(world["folder"])
    prompt = _prompt_ids(tokenizer, item, model.num_visual_tokens, "chatml")
    answer = tokenizer("three", add_special_tokens=False)["input_ids"]
    reference = candidate_logprobs(model, item_image(item, 64).unsqueeze(0), [prompt], [[answer]],
                                   tokenizer.pad_token_id)[0][0]
    logp, greedy = winner.loglikelihood(item.image, item.prompt, "three")
    assert logp == pytest.approx(reference, abs=1e-5)
    first = winner.generate([item.image], [item.prompt], max_new_tokens=1)[0]
    assert winner.loglikelihood(item.image, item.prompt, first)[1] is True or not first
    assert greedy is (first == "three")


def test_hf_language_model_rebuilds_without_its_checkpoint(tmp_path: Path, world) -> None:
    """An ``hf`` LM is rebuilt from the folder's own config: the checkpoint it was loaded from can be gone."""
    tokenizer = world["tokenizer"]
    checkpoint = tmp_path / "hub-lm"
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(checkpoint)
    trial = trial_spec(LanguageModelSpec(kind="hf", name_or_path=str(checkpoint)))
    model = build_eagle(trial.model, tokenizer, seed=1).eval()
    folder = save_model_folder(model, tokenizer, trial, tmp_path / "saved")
    for f in checkpoint.iterdir():
        f.unlink()
    checkpoint.rmdir()
    items = world["benchmark"].items[:3]
    expected = [r.scored.prediction for r in predict(model, tokenizer, make_benchmark("count", "synthetic", items),
                                                     image_size=64, batch_size=4, max_new_tokens=5)]
    assert eaglesearch.load(folder).generate([i.image for i in items], [i.prompt for i in items]) == expected


def test_unloadable_folders_say_what_is_wrong(tmp_path: Path, world) -> None:
    with pytest.raises(FileNotFoundError, match="lacks model.safetensors"):
        load_model_folder(tmp_path)
    other = tmp_path / "other"
    save_model_folder(world["model"], world["tokenizer"], world["trial"], other)
    for change in ({"num_layers": 2}, {"intermediate_size": 48}):  # a layer too many; a weight of another shape
        lm = world["trial"].model.lm.model_copy(update=change)
        model = world["trial"].model.model_copy(update={"lm": lm})
        (other / "trial.json").write_text(world["trial"].model_copy(update={"model": model}).model_dump_json())
        with pytest.raises(ValueError, match="does not match the architecture"):
            load_model_folder(other)


def test_pyfunc_loader_answers_rows(world) -> None:
    items = world["benchmark"].items[:3]
    served = _load_pyfunc(str(world["folder"]))
    frame = pd.DataFrame({"image": [str(i.image) for i in items], "prompt": [i.prompt for i in items]})
    expected = eaglesearch.load(world["folder"]).generate([i.image for i in items], [i.prompt for i in items])
    assert served.predict(frame) == expected
    assert served.predict(frame, params={"max_new_tokens": 1}) == [
        a for a in eaglesearch.load(world["folder"]).generate(frame["image"].tolist(), frame["prompt"].tolist(),
                                                                max_new_tokens=1)]
    with pytest.raises(ValueError, match="lacks the column"):
        served.predict(pd.DataFrame({"image": [str(items[0].image)]}))


def test_keep_best_defaults_to_one_and_is_not_part_of_the_search() -> None:
    base = {"name": "s", "recipe": "r.yaml", "strategy": {"kind": "grid", "factors": {"seed": [0, 1]}}}
    assert SearchSpace.model_validate(base).keep_best == 1
    three = SearchSpace.model_validate({**base, "keep_best": 3})
    assert three.keep_best == 3
    assert three.model_dump(mode="json") == SearchSpace.model_validate(base).model_dump(mode="json")  # fingerprint
    with pytest.raises((SpecError, ValueError), match="keep_best"):
        SearchSpace.model_validate({**base, "keep_best": -1})


def test_card_states_where_the_model_came_from(tmp_path: Path, world) -> None:
    from eaglesearch.export import ModelCard, write_export

    card = ModelCard(search="s", key=world["trial"].key, label=world["trial"].label, objective="objective",
                     value=0.625, run_id="r1", scores={"score/count": 0.625}, registered="models:/s/1")
    out = write_export(world["folder"], tmp_path / "out", card)
    text = (out / "README.md").read_text()
    assert "objective = 0.6250" in text and world["trial"].key in text and "models:/s/1" in text
    assert json.loads((out / "record.json").read_text())["value"] == 0.625
    with pytest.raises(FileExistsError, match="not an empty folder"):
        write_export(world["folder"], out, card)


def test_lmms_eval_adapter_answers_its_requests(world) -> None:
    """The adapter's interface methods on requests shaped as lmms-eval 0.7 builds them (the harness run itself is in
    tests/test_export_e2e.py)."""
    pytest.importorskip("lmms_eval")
    from types import SimpleNamespace

    from lmms_eval.models.registry_v2 import ModelRegistryV2

    from eaglesearch.export.lmms_eval import EagleSearchLMM, cut_at_stops, manifest

    registry = ModelRegistryV2()
    registry.register_manifest(manifest())  # what the `lmms_eval.models` entry point hands lmms-eval
    assert registry.get_model_class("eaglesearch") is EagleSearchLMM

    lmm = EagleSearchLMM(pretrained=str(world["folder"]), batch_size="2")
    items = world["benchmark"].items[:3]
    lmm.task_dict = {"t": {"test": [{"image": str(i.image), "q": i.prompt, "a": "three"} for i in items]}}
    visual = lambda doc: [Image.open(doc["image"])]  # a task's doc_to_visual
    requests = [SimpleNamespace(args=(i.prompt, {"max_new_tokens": 3, "until": ["\n\n"]}, visual, n, "t", "test"))
                for n, i in enumerate(items)]
    expected = lmm.winner.generate([i.image for i in items], [i.prompt for i in items], max_new_tokens=3)
    assert lmm.generate_until(requests) == [cut_at_stops(e, ["\n\n"]) for e in expected]
    scored = lmm.loglikelihood([SimpleNamespace(args=(i.prompt, lambda doc: doc["a"], visual, n, "t", "test"))
                                for n, i in enumerate(items)])
    assert scored == [lmm.winner.loglikelihood(i.image, i.prompt, "three") for i in items]
    assert cut_at_stops("yes. no", ["."]) == "yes" and cut_at_stops("a\n\nb", "\n\n") == "a"
    with pytest.raises(NotImplementedError):
        lmm.generate_until_multi_round(requests)
    with pytest.raises(TypeError, match="unknown: conv_template"):
        EagleSearchLMM(pretrained=str(world["folder"]), conv_template="vicuna_v1")


@pytest.mark.parametrize("resize", ["pad", "dynamic"])
def test_generate_applies_the_trials_image_policy(tmp_path: Path, world, resize: str) -> None:
    """A trial that padded or tiled its images answers through the winner as its evaluation did: on wide pictures
    (3:1) the policy decides what the experts see and how many image tokens the prompt gets."""
    from dataclasses import replace

    from eaglesearch.data.aspect import ImagePolicy
    from eaglesearch.model.experts.base import PAD_FILL
    from eaglesearch.spec.aspect import ImagePolicySpec

    image = ImagePolicySpec(resize=resize, max_tiles=4) if resize == "dynamic" else ImagePolicySpec(resize=resize)
    trial = world["trial"].model_copy(update={"data": world["trial"].data.model_copy(update={"image": image})})
    folder = save_model_folder(world["model"], world["tokenizer"], trial, tmp_path / "saved")
    wide = []
    for i, item in enumerate(world["benchmark"].items[:4]):
        picture = Image.open(item.image).convert("RGB")
        path = tmp_path / f"wide{i}.png"
        canvas = Image.new("RGB", (3 * picture.width, picture.height), (200, 30, 30))
        canvas.paste(picture, (picture.width, 0))
        canvas.save(path)
        wide.append(replace(item, image=path))
    benchmark = make_benchmark("count", "synthetic", wide)
    policy = ImagePolicy.from_spec(image, PAD_FILL)
    recorded = predict(world["model"], world["tokenizer"], benchmark, image_size=trial.data.image_size,
                       batch_size=trial.eval.batch_size, max_new_tokens=trial.eval.max_new_tokens, policy=policy)
    expected = [r.scored.prediction for r in recorded]
    winner = eaglesearch.load(folder)
    assert winner.policy == policy
    assert winner.generate([item.image for item in wide], [item.prompt for item in wide]) == expected
    # Scores are continuous in the pixels: the winner's equals evaluation's under the policy, not the squashed one's.
    from eaglesearch.data.aspect import images_in

    model, tokenizer, item = world["model"], world["tokenizer"], wide[0]
    answer = [tokenizer("three", add_special_tokens=False)["input_ids"]]
    references = []
    for chosen in (policy, ImagePolicy()):
        picture = item_image(item, 64, chosen)
        prompt = _prompt_ids(tokenizer, item, images_in(picture) * model.num_visual_tokens, "chatml")
        references.append(candidate_logprobs(model, picture.unsqueeze(0), [prompt], [answer],
                                             tokenizer.pad_token_id)[0][0])
    logp, _ = winner.loglikelihood(item.image, item.prompt, "three")
    assert logp == pytest.approx(references[0], abs=1e-5)
    assert logp != pytest.approx(references[1], abs=1e-4)
