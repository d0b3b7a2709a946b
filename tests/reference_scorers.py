"""Small, independent transcriptions of the reference scorers, for tests/test_metrics_reference.py.

Each function restates a reference script's rule in that script's own shape (loops, in-place steps, the same
quirks) and imports nothing from eaglesearch, so a fuzz test that compares it with our metrics checks our code
against the rule, not against itself. Sources (reference/metrics.md §5.1-§5.4):

* :func:`vqaeval_accuracy` — ``GT-Vision-Lab/VQA`` ``PythonEvaluationTools/vqaEvaluation/vqaEval.py`` (current
  revision), ``VQAEval.evaluate`` for one question.
* :func:`textvqa_accuracy` — LLaVA ``llava/eval/m4c_evaluator.py``: ``EvalAIAnswerProcessor`` and
  ``TextVQAAccuracyEvaluator`` for one prediction.
* :func:`docvqa_anls` — the DocVQA/InfographicVQA ANLS as Qwen-VL ``infographicsvqa_eval.py`` / lmms-eval
  ``lmms_eval/api/metrics.py::anls`` compute it, with their own Levenshtein dynamic programme.
* :func:`chartqa_relaxed_correctness` — pix2struct ``relaxed_correctness(target, prediction)`` (note the order).
* :func:`eval_pope` — POPE ``evaluate.py`` / LLaVA ``llava/eval/eval_pope.py`` for one split, returning what it
  prints.
* :func:`lmms_eval_pope` — lmms-eval ``lmms_eval/tasks/pope/utils.py``: ``pope_process_results`` per answer, then
  ``pope_aggregate_{accuracy,precision,recall,f1_score}``.
"""

from __future__ import annotations

import re

# ---------------------------------------------------------------------------------------------------------------
# tables shared by vqaEval.py and the EvalAI processor (identical in both scripts, capitalised keys included)

_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've couldnt've=couldn't've
didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've hasnt=hasn't
havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's Id've=I'd've
I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am
mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at 'ow'sat='ow's'at
shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've shouldnt=shouldn't
shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd somebodyd've=somebody'd've
somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's someoned=someone'd someoned've=someone'd've
someone'dve=someone'd've someonell=someone'll someones=someone's somethingd=something'd
somethingd've=something'd've something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd theyd've=they'd've
they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas wasnt=wasn't wed've=we'd've
we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's whatve=what've whens=when's
whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll
whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll yall'd've=y'all'd've
y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've you'dve=you'd've youll=you'll
youre=you're youve=you've
"""
CONTRACTIONS = dict(pair.split("=", 1) for pair in _CONTRACTION_PAIRS.split())
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
              "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")  # the scripts' mistyped look-behind, kept as written
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def _process_punctuation(in_text: str, comma_strip: re.Pattern[str]) -> str:
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(comma_strip, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    return PERIOD_STRIP.sub("", out_text, re.UNICODE)  # the flag lands in `count`, as in the scripts


def _process_digit_article(in_text: str) -> str:
    out_text = []
    for word in in_text.lower().split():
        word = MANUAL_MAP.get(word, word)
        if word not in ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in CONTRACTIONS:
            out_text[word_id] = CONTRACTIONS[word]
    return " ".join(out_text)


# ---------------------------------------------------------------------------------------------------------------
# VQAv2: vqaEval.py


_VQA_COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")


def vqaeval_accuracy(prediction: str, gt_answers: list[str]) -> float:
    """``VQAEval.evaluate`` for one question: the average of ``gtAcc`` (before its ×100 and rounding)."""
    answers = [{"answer": a, "answer_id": i + 1} for i, a in enumerate(gt_answers)]
    res_ans = prediction.replace("\n", " ").replace("\t", " ").strip()
    res_ans = _process_digit_article(_process_punctuation(res_ans, _VQA_COMMA_STRIP))
    gt_acc = []
    if len({ans["answer"] for ans in answers}) > 1:
        for ans_dic in answers:
            ans_dic["answer"] = _process_punctuation(ans_dic["answer"], _VQA_COMMA_STRIP)
    for gt_ans_datum in answers:
        other_gt_ans = [item for item in answers if item != gt_ans_datum]
        matching_ans = [item for item in other_gt_ans if item["answer"] == res_ans]
        gt_acc.append(min(1, float(len(matching_ans)) / 3))
    return float(sum(gt_acc)) / len(gt_acc)


# ---------------------------------------------------------------------------------------------------------------
# TextVQA / VizWiz: m4c_evaluator.py


_EVALAI_COMMA_STRIP = re.compile(r"(?<=\d)(\,)+(?=\d)")


def evalai_process(item: str) -> str:
    """``EvalAIAnswerProcessor.__call__``."""
    item = item.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()  # word_tokenize
    item = item.replace("\n", " ").replace("\t", " ").strip()
    return _process_digit_article(_process_punctuation(item, _EVALAI_COMMA_STRIP))


def textvqa_accuracy(prediction: str, gt_answers: list[str]) -> float:
    """``TextVQAAccuracyEvaluator``: the soft score of the processed prediction among the processed answers."""
    answers = [evalai_process(a) for a in gt_answers]
    gt_pairs = list(enumerate(answers))
    unique_answer_scores = {}
    for unique_answer in set(answers):
        accs = []
        for gt_pair in gt_pairs:
            other_answers = [item for item in gt_pairs if item != gt_pair]
            matching_answers = [item for item in other_answers if item[1] == unique_answer]
            accs.append(min(1, float(len(matching_answers)) / 3))
        unique_answer_scores[unique_answer] = sum(accs) / len(accs)
    return unique_answer_scores.get(evalai_process(prediction), 0.0)


# ---------------------------------------------------------------------------------------------------------------
# DocVQA / InfoVQA: ANLS


def _levenshtein_distance(s1: str, s2: str) -> int:
    if len(s1) > len(s2):
        s1, s2 = s2, s1
    distances = list(range(len(s1) + 1))
    for i2, c2 in enumerate(s2):
        distances_ = [i2 + 1]
        for i1, c1 in enumerate(s1):
            if c1 == c2:
                distances_.append(distances[i1])
            else:
                distances_.append(1 + min((distances[i1], distances[i1 + 1], distances_[-1])))
        distances = distances_
    return distances[-1]


def docvqa_anls(prediction: str, gt_answers: list[str], threshold: float = 0.5) -> float:
    """ANLS of one question: processed strings compared, raw ``.upper()`` lengths as the denominator."""
    values = []
    for answer in gt_answers:
        gt_answer = " ".join(answer.strip().lower().split())
        det_answer = " ".join(prediction.strip().lower().split())
        dist = _levenshtein_distance(gt_answer, det_answer)
        length = max(len(answer.upper()), len(prediction.upper()))
        values.append(0.0 if length == 0 else float(dist) / float(length))
    question_result = 1 - min(values)
    if question_result < threshold:
        question_result = 0
    return question_result


# ---------------------------------------------------------------------------------------------------------------
# ChartQA: pix2struct relaxed correctness


def _to_float(text: str) -> float | None:
    try:
        if text.endswith("%"):
            return float(text.rstrip("%")) / 100.0
        return float(text)
    except ValueError:
        return None


def chartqa_relaxed_correctness(target: str, prediction: str, max_relative_change: float = 0.05) -> bool:
    """pix2struct ``relaxed_correctness`` (target first)."""
    prediction_float = _to_float(prediction)
    target_float = _to_float(target)
    if prediction_float is not None and target_float:
        relative_change = abs(prediction_float - target_float) / abs(target_float)
        return relative_change <= max_relative_change
    return prediction.lower() == target.lower()


# ---------------------------------------------------------------------------------------------------------------
# POPE: evaluate.py / eval_pope.py


def pope_answer(text: str) -> str:
    """The script's reading of one answer: "no" or "yes"."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    if "No" in words or "not" in words or "no" in words:
        return "no"
    return "yes"


def eval_pope(answers: list[str], labels: list[str]) -> dict[str, float]:
    """One split's printed numbers (raises ``ZeroDivisionError`` where the script does)."""
    label_list = [0 if label == "no" else 1 for label in labels]
    pred_list = [0 if pope_answer(text) == "no" else 1 for text in answers]
    pos, neg = 1, 0
    yes_ratio = pred_list.count(1) / len(pred_list)
    tp, tn, fp, fn = 0, 0, 0, 0
    for pred, label in zip(pred_list, label_list, strict=True):
        if pred == pos and label == pos:
            tp += 1
        elif pred == pos and label == neg:
            fp += 1
        elif pred == neg and label == neg:
            tn += 1
        elif pred == neg and label == pos:
            fn += 1
    precision = float(tp) / float(tp + fp)
    recall = float(tp) / float(tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    acc = (tp + tn) / (tp + tn + fp + fn)
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn, "accuracy": acc, "precision": precision, "recall": recall,
            "f1": f1, "yes_ratio": yes_ratio}


# ---------------------------------------------------------------------------------------------------------------
# POPE: lmms-eval lmms_eval/tasks/pope/utils.py


def lmms_eval_pope(answers: list[str], labels: list[str]) -> dict[str, float]:
    """lmms-eval's accuracy, precision, recall and F1 over one set of answers (its yes-ratio counts labels: left out)."""
    results = []
    for answer, label in zip(answers, labels, strict=True):
        pred = answer.lower().strip()
        gt_ans = label.lower().strip()
        assert gt_ans in ["yes", "no"]
        score = 1.0 if pred == gt_ans else 0.0
        results.append({"score": score, "prediction": pred, "ground_truth": gt_ans})
    accuracy = sum(r["score"] for r in results) / len(results)
    true_positives = false_positives = false_negatives = 0
    for r in results:
        if r["ground_truth"] == "yes" and r["prediction"] == "yes":
            true_positives += 1
        elif r["ground_truth"] == "no" and r["prediction"] == "yes":
            false_positives += 1
    for r in results:
        if r["ground_truth"] == "yes" and r["prediction"] == "no":
            false_negatives += 1
    tp_fp = true_positives + false_positives
    tp_fn = true_positives + false_negatives
    precision = true_positives / tp_fp if tp_fp > 0 else 0
    recall = true_positives / tp_fn if tp_fn > 0 else 0
    f1 = 2 * (precision * recall) / (precision + recall) if (precision + recall) > 0 else 0
    return {"accuracy": accuracy, "precision": precision, "recall": recall, "f1": f1}
