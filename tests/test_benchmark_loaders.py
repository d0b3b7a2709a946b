"""Benchmark loaders on small files written in each harness's real on-disk format.

LLaVA json/jsonl + a folder of PNGs, a VLMEvalKit tsv with base64 PNGs and A-D columns, lmms-eval-style parquet
with ``{"bytes", "path"}`` image cells (written with pandas/pyarrow): ids, references, choices, meta, the exact
standard prompts, images opening as RGB, MMBench circular passes, ``limit``, and the errors for broken records.
"""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from eaglesearch.evaluate.benchmarks import BENCHMARK_KINDS, load_benchmark, open_image

SHORT = "\nAnswer the question using a single word or phrase."
LETTER = "\nAnswer with the option's letter from the given choices directly."


def png(color: tuple[int, ...] = (200, 30, 30), mode: str = "RGB", size: int = 6) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def image_folder(root: Path, *names: str) -> Path:
    folder = root / "images"
    for i, name in enumerate(names):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(png((10 * i, 100, 200)))
    return folder


def write_json(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)  # what VLMEvalKit's `dump(data, 'x.tsv')` does
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_parquet(path, engine="pyarrow", index=False)
    return path


def assert_rgb(item) -> None:
    image = open_image(item.image)
    assert image.mode == "RGB" and image.size[0] > 0


# ---------------------------------------------------------------------------------------------------------------
# LLaVA conversation json (the synthetic benchmark's format)


def test_llava_conversations_json_with_image_folder(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "eval/count_00000.png", "eval/color_00000.png")
    path = write_json(tmp_path / "eval.json", [
        {"id": "count-eval-00000", "image": "eval/count_00000.png", "conversations": [
            {"from": "human", "value": "<image>\nHow many shapes are there?"}, {"from": "gpt", "value": "3"}]},
        {"id": "color-eval-00000", "image": "eval/color_00000.png", "conversations": [
            {"from": "human", "value": "What color is the circle?\n<image>"}, {"from": "gpt", "value": "red"}]},
    ])
    items = load_benchmark("synthetic", path, folder)
    assert [i.id for i in items] == ["count-eval-00000", "color-eval-00000"]
    assert [i.references for i in items] == [("3",), ("red",)]
    assert [i.prompt for i in items] == ["How many shapes are there?", "What color is the circle?"]
    assert items[0].question == items[0].prompt and items[0].choices == ()
    assert items[0].image == folder / "eval/count_00000.png" and items[0].benchmark == "synthetic"
    assert items[0].meta == {"prompt_style": "as written in the file"}
    assert_rgb(items[0])
    assert [i.id for i in load_benchmark("llava", path, folder, limit=1)] == ["count-eval-00000"]


def test_synthetic_kind_reads_what_write_synthetic_writes(tmp_path: Path) -> None:
    from eaglesearch.data import write_synthetic
    from eaglesearch.spec import SyntheticDataSpec

    dataset = write_synthetic(SyntheticDataSpec(train_per_task=1, eval_per_task=2), tmp_path / "synthetic")
    for task, path in dataset.eval_json.items():
        items = load_benchmark("synthetic", path, dataset.image_folder)
        assert [i.id for i in items] == [f"{task}-eval-00000", f"{task}-eval-00001"]
        assert all("<image>" not in i.prompt and i.references[0] for i in items)
        assert_rgb(items[0])


def test_llava_multi_turn_and_missing_image_are_errors(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "a.png")
    turns = [{"from": "human", "value": "<image>\nQ1"}, {"from": "gpt", "value": "A1"},
             {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]
    path = write_json(tmp_path / "multi.json", [{"id": "m1", "image": "a.png", "conversations": turns}])
    with pytest.raises(ValueError, match=r"multi\.json: record 0 \(id 'm1'\).*split multi-turn"):
        load_benchmark("llava", path, folder)
    path = write_json(tmp_path / "gone.json", [{"id": "g7", "image": "nowhere.png", "conversations": turns[:2]}])
    with pytest.raises(ValueError, match=r"gone\.json: record 0 \(id 'g7'\): image file .*nowhere\.png does not "
                                         r"exist; fix the record's 'image' or pass the right image_folder"):
        load_benchmark("llava", path, folder)


# ---------------------------------------------------------------------------------------------------------------
# VQA family


def ten(*answers: str) -> list[str]:
    return list(answers) + [answers[-1]] * (10 - len(answers))


def test_vqav2_jsonl_answer_dicts_and_prompt(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "COCO_val2014_000000000042.jpg.png")
    answers = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(ten("2", "two"))]
    path = write_jsonl(tmp_path / "vqav2_val.jsonl", [
        {"question_id": 42000, "question": "How many dogs?", "answers": answers, "answer_type": "number",
         "question_type": "how many", "image": "COCO_val2014_000000000042.jpg.png"},
    ])
    (item,) = load_benchmark("vqav2", path, folder)
    assert item.id == "42000" and item.question == "How many dogs?"
    assert item.prompt == "How many dogs?" + SHORT
    assert item.references == tuple(ten("2", "two"))
    assert item.meta["category"] == "number" and item.meta["question_type"] == "how many"
    assert item.meta["prompt_style"] == "lmms-eval vqav2"
    assert_rgb(item)


def test_textvqa_parquet_image_bytes_with_and_without_ocr_tokens(tmp_path: Path) -> None:
    rows = [{"question_id": 34602, "question": "what is the BRAND of this camera?",
             "answers": ten("dakota", "nous les gosses"), "ocr_tokens": ["nous", "les", "gosses"],
             "image": {"bytes": png((0, 0, 0, 0), mode="RGBA"), "path": "003a8ae2ef43b901.jpg"}},
            {"question_id": 34603, "question": "what is written?", "answers": ten("stop"), "ocr_tokens": [],
             "image": {"bytes": png(128, mode="L"), "path": None}}]
    path = write_parquet(tmp_path / "validation-00000-of-00001.parquet", rows)

    plain = load_benchmark("textvqa", path, None)
    assert [i.id for i in plain] == ["34602", "34603"]
    assert plain[0].prompt == "What is the brand of this camera?" + SHORT  # lmms-eval's str.capitalize()
    assert plain[0].question == "what is the BRAND of this camera?"
    assert plain[0].meta["ocr_tokens_in_prompt"] == "false"
    assert isinstance(plain[0].image, bytes)
    assert open_image(plain[0].image).mode == "RGB" and open_image(plain[1].image).mode == "RGB"

    ocr = load_benchmark("textvqa_ocr", path, None)
    assert ocr[0].prompt == "What is the brand of this camera?\nReference OCR token: nous, les, gosses" + SHORT
    assert ocr[1].prompt == "What is written?\nReference OCR token: " + SHORT
    assert ocr[0].meta["ocr_tokens_in_prompt"] == "true"
    assert ocr[0].meta["prompt_style"] == "lmms-eval textvqa (ocr: true)"


def test_llava_question_file_embedded_instruction_and_ocr_tokens_are_cut(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "img.png")
    text = "what does the sign say?\nReference OCR token: STOP, here" + SHORT
    path = write_jsonl(tmp_path / "llava_textvqa_val_v051_ocr.jsonl",
                       [{"question_id": "q1", "image": "img.png", "text": text, "answers": ten("stop")}])
    (item,) = load_benchmark("textvqa_ocr", path, folder)
    assert item.question == "what does the sign say?"
    assert item.prompt == "What does the sign say?\nReference OCR token: STOP, here" + SHORT
    (item,) = load_benchmark("textvqa", path, folder)
    assert item.prompt == "What does the sign say?" + SHORT


def test_vqa_needs_ten_answers_and_textvqa_ocr_needs_tokens(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "a.png")
    path = write_jsonl(tmp_path / "short.jsonl", [{"question_id": 5, "question": "Q?", "answers": ["a", "b"],
                                                   "image": "a.png"}])
    with pytest.raises(ValueError, match=r"short\.jsonl: record 0 \(id '5'\): has 2 answers; 'vqav2' .* exactly 10"):
        load_benchmark("vqav2", path, folder)
    (item,) = load_benchmark("docvqa", path, folder)  # ANLS takes any number of answers
    assert item.references == ("a", "b") and item.prompt == "Q?" + SHORT
    path = write_jsonl(tmp_path / "noocr.jsonl", [{"question_id": 5, "question": "Q?", "answers": ten("a"),
                                                   "image": "a.png"}])
    with pytest.raises(ValueError, match=r"noocr\.jsonl: record 0 \(id '5'\): has no OCR tokens.*'ocr_tokens'"):
        load_benchmark("textvqa_ocr", path, folder)


def test_vizwiz_prompt_and_missing_answers_column(tmp_path: Path) -> None:
    rows = [{"question_id": "VizWiz_val_00000000.jpg", "question": "what is this?", "answers": ten("unanswerable"),
             "image": {"bytes": png(), "path": None}}]
    (item,) = load_benchmark("vizwiz", write_parquet(tmp_path / "val.parquet", rows), None)
    assert item.prompt == ("What is this?\nWhen the provided information is insufficient, respond with "
                           "'Unanswerable'." + SHORT)
    rows = [{"question_id": "VizWiz_test_1.jpg", "question": "what is this?", "image": {"bytes": png(), "path": None}}]
    with pytest.raises(ValueError, match=r"test\.parquet: record 0 \(id 'VizWiz_test_1\.jpg'\): no 'answers' value "
                                         r"\(or 'answer'\); columns present: 'question_id', 'question', 'image'"):
        load_benchmark("vizwiz", write_parquet(tmp_path / "test.parquet", rows), None)


def test_docvqa_parquet_raw_image_bytes_and_list_answers(tmp_path: Path) -> None:
    rows = [{"questionId": 49153, "question": "What is the ‘actual’ value per 1000, during the year 1975?",
             "answers": ["0.28"], "image": png(), "docId": 14465}]
    (item,) = load_benchmark("docvqa", write_parquet(tmp_path / "docvqa.parquet", rows), None)
    assert item.id == "49153" and item.references == ("0.28",) and item.meta["docId"] == "14465"
    assert BENCHMARK_KINDS["docvqa"].metric == "anls"
    assert_rgb(item)


def test_chartqa_original_json_split_from_file_name_and_lmms_type_column(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "41699051005347.png")
    path = write_json(tmp_path / "test_human.json", [
        {"imgname": "41699051005347.png", "query": "How many food item is shown in the bar graph?", "label": "14"}])
    (item,) = load_benchmark("chartqa", path, folder)
    assert item.id == "0" and item.references == ("14",)
    assert item.prompt == "How many food item is shown in the bar graph?\nAnswer the question with a single word."
    assert item.meta["category"] == "human" and item.meta["split"] == "human"
    rows = [{"type": "augmented_test", "question": "Q?", "answer": "5", "image": {"bytes": png(), "path": None}}]
    (item,) = load_benchmark("chartqa", write_parquet(tmp_path / "test.parquet", rows), None)
    assert item.meta["category"] == "augmented"
    path = write_json(tmp_path / "charts.json", [{"imgname": "41699051005347.png", "query": "Q?", "label": "1"}])
    with pytest.raises(ValueError, match=r"charts\.json: record 0 \(id '0'\): has no split; add a 'type' column"):
        load_benchmark("chartqa", path, folder)


# ---------------------------------------------------------------------------------------------------------------
# yes/no: POPE, MME


def test_pope_jsonl_split_from_file_name_and_labels(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "COCO_val2014_000000310196.jpg")
    path = write_jsonl(tmp_path / "coco_pope_adversarial.jsonl", [
        {"question_id": 1, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?",
         "label": "Yes"},
        {"question_id": 2, "image": "COCO_val2014_000000310196.jpg", "text": " Is there a dog in the image? ",
         "label": "no"}])
    items = load_benchmark("pope", path, folder)
    assert [i.references for i in items] == [("yes",), ("no",)]
    assert items[1].prompt == "Is there a dog in the image?" + SHORT
    assert {i.meta["category"] for i in items} == {"adversarial"}
    kind = BENCHMARK_KINDS["pope"]
    assert (kind.metric, kind.mode, kind.candidates(items[0])) == ("pope", "likelihood", ("yes", "no"))
    bad = write_jsonl(tmp_path / "coco_pope_random.jsonl", [
        {"question_id": 9, "image": "COCO_val2014_000000310196.jpg", "text": "Is there a cat?", "label": "maybe"}])
    with pytest.raises(ValueError, match=r"coco_pope_random\.jsonl: record 0 \(id '9'\): answer 'maybe' is not yes"):
        load_benchmark("pope", bad, folder)


def mme_rows() -> list[dict]:
    rows = []
    for image_id, category in (("code_reasoning/0020.png", "code_reasoning"), ("existence/000000006040.jpg",
                                                                               "existence")):
        for answer in ("Yes", "No"):
            rows.append({"question_id": image_id, "question": f"Is it {answer.lower()}? Please answer yes or no.",
                         "answer": answer, "category": category, "image": {"bytes": png(), "path": None}})
    return rows


def test_mme_parquet_pairs_meta_prompt_and_limit_keeps_pairs(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "test-00000-of-00004.parquet", mme_rows())
    items = load_benchmark("mme", path, None)
    assert [i.id for i in items] == ["0", "1", "2", "3"]  # question_id is the image, shared: not an item id
    assert items[0].question == "Is it yes? Please answer yes or no."
    assert items[0].prompt == "Is it yes?" + SHORT  # lmms-eval replaces the shipped suffix by its post_prompt
    assert items[0].meta == {"category": "code_reasoning", "image": "code_reasoning/0020.png",
                             "group": "code_reasoning/code_reasoning/0020.png", "prompt_style": "lmms-eval mme"}
    assert [i.references for i in items] == [("yes",), ("no",)] * 2
    assert [i.id for i in load_benchmark("mme", path, None, limit=1)] == ["0", "1"]
    assert BENCHMARK_KINDS["mme"].candidates(items[0]) == ("yes", "no")
    with pytest.raises(ValueError, match=r"lonely\.parquet: MME image 'existence/existence/000000006040\.jpg' has 1 "
                                         r"question"):
        load_benchmark("mme", write_parquet(tmp_path / "lonely.parquet", mme_rows()[:3]), None)


# ---------------------------------------------------------------------------------------------------------------
# OCRBench, GQA


def test_ocrbench_vlmevalkit_tsv_answer_list_and_question_type(tmp_path: Path) -> None:
    image = b64(png())
    path = write_tsv(tmp_path / "OCRBench.tsv", [
        {"index": 0, "image": image, "question": "what is written in the image?", "answer": "['CENTRE', 'centre']",
         "category": "Regular Text Recognition"},
        {"index": 1, "image": "0", "question": " Write out the expression. ", "answer": "['x^{2}+1']",
         "category": "Handwritten Mathematical Expression Recognition"}])
    items = load_benchmark("ocrbench", path, None)
    assert [i.references for i in items] == [("CENTRE", "centre"), ("x^{2}+1",)]
    assert items[1].prompt == "Write out the expression." and items[1].question == " Write out the expression. "
    assert items[1].meta["category"] == "Handwritten Mathematical Expression Recognition"
    assert items[1].image == items[0].image  # "0" refers to row 0's image (VLMEvalKit space saving)
    assert_rgb(items[1])


def test_gqa_question_dict_json_images_by_id_folder_and_parquet_table(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "n161313.png")
    path = write_json(tmp_path / "testdev_balanced_questions.json", {
        "201307251": {"imageId": "n161313", "question": "Is it overcast?", "answer": "no", "fullAnswer": "No, it is "
                      "clear.", "types": {"structural": "verify", "semantic": "global", "detailed": "weather"}}})
    (item,) = load_benchmark("gqa", path, folder)
    assert item.id == "201307251" and item.references == ("no",) and item.image == folder / "n161313.png"
    assert item.prompt == "Is it overcast?" + SHORT
    assert item.meta["category"] == "verify" and item.meta["image"] == "n161313"
    table = write_parquet(tmp_path / "testdev_balanced_images.parquet",
                          [{"id": "n161313", "image": {"bytes": png(), "path": "n161313.jpg"}}])
    (item,) = load_benchmark("gqa", path, table)
    assert isinstance(item.image, bytes)
    assert_rgb(item)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"testdev_balanced_questions\.json: record 0 \(id '201307251'\): no image "
                                         r"named 'n161313' \('imageId'\)"):
        load_benchmark("gqa", path, empty)


# ---------------------------------------------------------------------------------------------------------------
# multiple choice


def mmbench_tsv(path: Path) -> Path:
    return write_tsv(path, [
        {"index": 7, "question": "Which animal is shown?", "hint": "Look closely.", "A": "cat", "B": "dog",
         "C": "bird", "D": "fish", "answer": "B", "category": "object_localization",
         "l2-category": "finegrained_perception", "image": b64(png())},
        {"index": 8, "question": "Is it day?", "hint": None, "A": "yes", "B": "no", "C": None, "D": None,
         "answer": "A", "category": "scene", "l2-category": "coarse_perception", "image": "7"},
    ])


def test_mmbench_tsv_generates_circular_passes(tmp_path: Path) -> None:
    items = load_benchmark("mmbench", mmbench_tsv(tmp_path / "MMBench_DEV_EN.tsv"), None)
    first = items[:4]
    assert [i.id for i in first] == ["7", "1000007", "2000007", "3000007"]
    assert [i.references[0] for i in first] == ["B", "A", "D", "C"]  # reference/metrics.md §5.8 vector
    assert [i.choices for i in first] == [("cat", "dog", "bird", "fish"), ("dog", "bird", "fish", "cat"),
                                          ("bird", "fish", "cat", "dog"), ("fish", "cat", "dog", "bird")]
    for item in first:  # the correct answer's text survives every rotation
        assert item.choices[item.letters.index(item.references[0])] == "dog"
    assert [i.meta["group"] for i in items] == ["7"] * 4 + ["8"] * 2
    assert [i.meta["circular_pass"] for i in first] == ["0", "1", "2", "3"]
    assert first[1].meta["category"] == "object_localization"
    assert first[1].meta["l2_category"] == "finegrained_perception"
    assert first[1].prompt == "Look closely.\nWhich animal is shown?\nA. dog\nB. bird\nC. fish\nD. cat" + LETTER
    assert [i.id for i in items[4:]] == ["8", "1000008"] and items[5].references == ("B",)
    assert items[4].prompt == "Is it day?\nA. yes\nB. no" + LETTER  # no hint, two options
    assert items[4].image == items[0].image
    assert_rgb(items[4])
    kind = BENCHMARK_KINDS["mmbench"]
    assert (kind.metric, kind.mode, kind.candidates(items[4])) == ("mmbench_circular", "likelihood", ("A", "B"))
    limited = load_benchmark("mmbench", tmp_path / "MMBench_DEV_EN.tsv", None, limit=1)
    assert [i.id for i in limited] == ["7", "1000007", "2000007", "3000007"]


def test_mmbench_file_with_passes_is_used_as_is(tmp_path: Path) -> None:
    image = b64(png())
    rows = [{"index": 1000007, "question": "Q?", "A": "dog", "B": "cat", "answer": "A", "image": "7"},
            {"index": 3, "question": "R?", "A": "x", "B": "y", "answer": "B", "image": image},
            {"index": 7, "question": "Q?", "A": "cat", "B": "dog", "answer": "B", "image": image}]
    path = write_tsv(tmp_path / "MMBench_DEV_EN_circular.tsv", rows)
    items = load_benchmark("mmbench", path, None)
    assert [(i.id, i.meta["group"], i.meta["circular_pass"]) for i in items] == [
        ("1000007", "7", "1"), ("3", "3", "0"), ("7", "7", "0")]
    assert [i.id for i in load_benchmark("mmbench", path, None, limit=1)] == ["1000007", "7"]  # the whole group


def test_seed_parquet_choice_columns_keeps_image_questions(tmp_path: Path) -> None:
    rows = [{"question_id": "101669", "data_type": "image", "question": "How many towels are in the image?",
             "choice_a": "One", "choice_b": "Two", "choice_c": "Three", "choice_d": "Four", "answer": "A",
             "question_type_id": 5, "image": [{"bytes": png(), "path": None}]},
            {"question_id": "v1", "data_type": "video", "question": "What happens?", "choice_a": "a",
             "choice_b": "b", "choice_c": "c", "choice_d": "d", "answer": "C", "question_type_id": 10,
             "image": [{"bytes": png(), "path": None}, {"bytes": png(), "path": None}]}]
    (item,) = load_benchmark("seed", write_parquet(tmp_path / "test-00000-of-00001.parquet", rows), None)
    assert item.id == "101669" and item.references == ("A",) and item.choices == ("One", "Two", "Three", "Four")
    assert item.prompt == "How many towels are in the image?\nA. One\nB. Two\nC. Three\nD. Four" + LETTER
    assert item.meta["category"] == "5"
    assert_rgb(item)


def test_seed_bench_json_questions_key_and_parquet_shard_directory(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "1454426_2591111986.png")
    question = {"answer": "B", "choice_a": "1", "choice_b": "2", "choice_c": "3", "choice_d": "4",
                "data_id": "1454426_2591111986.png", "data_type": "image", "question": "How many?",
                "question_id": "101669", "question_type_id": 5}
    path = write_json(tmp_path / "SEED-Bench.json", {"questions": [question], "question_type": {"Scene": 1}})
    (item,) = load_benchmark("seed", path, folder)
    assert item.image == folder / "1454426_2591111986.png" and item.references == ("B",)
    shards = tmp_path / "shards"
    shards.mkdir()
    for n, ids in enumerate((["a", "b"], ["c"])):
        write_parquet(shards / f"dev-0000{n}-of-00002.parquet", [
            {**question, "question_id": q, "image": [{"bytes": png(), "path": None}]} for q in ids])
    assert [i.id for i in load_benchmark("seed", shards, None)] == ["a", "b", "c"]


def test_scienceqa_and_ai2d_list_options_with_index_answers(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "sqa.png", "ai2d.png")
    sqa = write_json(tmp_path / "scienceqa.json", [
        {"image": "sqa.png", "question": "Which is a mammal?", "choices": ["frog", "whale", "shark"], "answer": 1,
         "hint": "Mammals feed their young milk.", "category": "Classification"},
        {"image": "sqa.png", "question": "Pick one.", "choices": ["x", "y"], "answer": 0, "hint": ""}])
    items = load_benchmark("scienceqa", sqa, folder)
    assert [i.id for i in items] == ["0", "1"] and [i.references for i in items] == [("B",), ("A",)]
    assert items[0].prompt == ("Context: Mammals feed their young milk.\nWhich is a mammal?\nA. frog\nB. whale\n"
                               "C. shark" + LETTER)
    assert items[1].prompt == "Pick one.\nA. x\nB. y" + LETTER
    ai2d = write_jsonl(tmp_path / "ai2d.jsonl", [
        {"question": "What eats grass?", "options": ["fox", "rabbit", "hawk", "snake"], "answer": "1",
         "image": "ai2d.png"}])
    (item,) = load_benchmark("ai2d", ai2d, folder)
    assert item.references == ("B",)
    assert item.prompt == "What eats grass?\nA. fox\nB. rabbit\nC. hawk\nD. snake" + LETTER
    bad = write_jsonl(tmp_path / "ai2d_bad.jsonl", [{"question": "Q?", "options": ["a", "b"], "answer": "5",
                                                    "image": "ai2d.png"}])
    with pytest.raises(ValueError, match=r"ai2d_bad\.jsonl: record 0 \(id '0'\): answer index 5 is out of range"):
        load_benchmark("ai2d", bad, folder)


def test_tsv_option_gap_is_an_error(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "gap.tsv", [{"index": 3, "question": "Q?", "A": "a", "B": None, "C": "c",
                                             "answer": "A", "image": b64(png())}])
    with pytest.raises(ValueError, match=r"gap\.tsv: record 0 \(id '3'\): option 'B' is empty but 'C' is not"):
        load_benchmark("seed", path, None)


# ---------------------------------------------------------------------------------------------------------------
# prompts, limit, ids, errors


def test_custom_prompt_template(tmp_path: Path) -> None:
    items = load_benchmark("mmbench", mmbench_tsv(tmp_path / "mmb.tsv"), None, prompt="Q: {question}\n{options}\nA:")
    assert items[1].prompt == "Q: Which animal is shown?\nA. dog\nB. bird\nC. fish\nD. cat\nA:"
    assert items[1].meta["prompt_style"] == "custom"
    with pytest.raises(ValueError, match=r"uses \{answer\}; 'mmbench' provides \{question\}, \{options\}, \{hint\}"):
        load_benchmark("mmbench", tmp_path / "mmb.tsv", None, prompt="{question} {answer}")
    with pytest.raises(ValueError, match=r"must contain \{options\}"):
        load_benchmark("mmbench", tmp_path / "mmb.tsv", None, prompt="{question}")


def test_limit_ids_and_duplicate_id_column(tmp_path: Path) -> None:
    folder = image_folder(tmp_path, "a.png")
    rows = [{"question_id": 1, "question": f"Q{i}?", "answer": "x", "imageId": "a"} for i in range(5)]
    path = write_jsonl(tmp_path / "gqa.jsonl", rows)  # question_id repeats: not an id; positions are
    assert [i.id for i in load_benchmark("gqa", path, folder)] == ["0", "1", "2", "3", "4"]
    assert [i.question for i in load_benchmark("gqa", path, folder, limit=2)] == ["Q0?", "Q1?"]
    with pytest.raises(ValueError, match="limit must be a positive integer"):
        load_benchmark("gqa", path, folder, limit=0)
    with pytest.raises(ValueError, match=r"unknown benchmark kind 'gqa2'; known kinds: ai2d, chartqa"):
        load_benchmark("gqa2", path, folder)


def test_bad_base64_and_bad_image_reference_name_file_and_record(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "SEEDBench_IMG.tsv", [
        {"index": 11, "question": "Q?", "A": "a", "B": "b", "answer": "A", "image": "not*base64!" * 10}])
    with pytest.raises(ValueError, match=r"SEEDBench_IMG\.tsv: record 0 \(id '11'\): the image is not valid base64"):
        load_benchmark("seed", path, None)
    path = write_tsv(tmp_path / "undecodable.tsv", [
        {"index": 12, "question": "Q?", "A": "a", "B": "b", "answer": "A", "image": b64(b"plain text, no image" * 5)}])
    with pytest.raises(ValueError, match=r"undecodable\.tsv: record 0 \(id '12'\): the image bytes .* are not an "
                                         r"image PIL can read"):
        load_benchmark("seed", path, None)
    path = write_tsv(tmp_path / "dangling.tsv", [
        {"index": 13, "question": "Q?", "A": "a", "B": "b", "answer": "A", "image": "99"}])
    with pytest.raises(ValueError, match=r"dangling\.tsv: record 0 \(index '13'\): image '99' is too short to be "
                                         r"base64 and names no row"):
        load_benchmark("seed", path, None)


def test_unreadable_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "ok"}\n{not json\n')
    with pytest.raises(ValueError, match=r"broken\.jsonl: line 2 \(record 1\) is not valid json"):
        load_benchmark("gqa", broken, None)
    fake = tmp_path / "fake.parquet"
    fake.write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"fake\.parquet: not a readable parquet file"):
        load_benchmark("docvqa", fake, None)
    with pytest.raises(ValueError, match=r"missing\.json: file not found"):
        load_benchmark("llava", tmp_path / "missing.json", None)
    other = tmp_path / "data.csv"
    other.write_text("a,b\n")
    with pytest.raises(ValueError, match=r"data\.csv: unknown benchmark file type '\.csv'"):
        load_benchmark("gqa", other, None)


def test_every_kind_declares_a_registered_metric_and_mode() -> None:
    from eaglesearch.evaluate.metrics import HARNESS_VARIANTS, LENIENT_VARIANTS, METRICS

    # every kind uses a reference-identical metric; the _lenient deviations and other harnesses' rules are
    # registered but never a default
    assert {k.metric for k in BENCHMARK_KINDS.values()} == set(METRICS) - set(LENIENT_VARIANTS) - set(HARNESS_VARIANTS)
    likelihood = {name for name, k in BENCHMARK_KINDS.items() if k.mode == "likelihood"}
    assert likelihood == {"pope", "mme", "seed", "scienceqa", "ai2d", "mmbench"}
    assert all(k.name == name for name, k in BENCHMARK_KINDS.items())


def test_loaded_items_score_with_their_kinds_metric(tmp_path: Path) -> None:
    from eaglesearch.evaluate.items import ScoredItem
    from eaglesearch.evaluate.metrics import get_metric

    files = {"mme": write_parquet(tmp_path / "mme.parquet", mme_rows()), "mmbench": mmbench_tsv(tmp_path / "m.tsv")}
    for kind, path in files.items():
        items = load_benchmark(kind, path, None)
        metric = get_metric(BENCHMARK_KINDS[kind].metric)
        scored = [ScoredItem(i, i.references[0], metric.score(i.references[0], i)) for i in items]
        result = metric.aggregate(scored)
        assert result[metric.primary] == {"mme": 200.0, "mmbench": 1.0}[kind]
