"""VQA answer normalizations: the official VQA evaluation's steps, the EvalAI/TextVQA processor, and ours.

All three are built from the official ``processPunctuation`` + ``processDigitArticle`` steps
(reference/metrics.md §5.1, "Normalization variants"); they differ only in what runs around them:

* :func:`vqa_eval_prediction` — **official VQA** (``GT-Vision-Lab/VQA`` ``vqaEval.py``, current revision), the
  prediction side: ``\\n``/``\\t`` → space, strip, ``processPunctuation``, ``processDigitArticle``. (The official
  tool treats the human answers differently: ``processPunctuation`` only, and only when they disagree; that rule
  lives in ``vqa.py``.)
* :func:`evalai_normalize` — **EvalAI / MMF ``EvalAIAnswerProcessor``** (LLaVA ``llava/eval/m4c_evaluator.py``, the
  standard TextVQA scorer), applied to the prediction and to every human answer: first ``word_tokenize``
  (lowercase, *delete* every ``,`` and ``?``, turn ``'s`` into `` 's``, strip), then ``\\n``/``\\t`` → space, strip,
  ``processPunctuation``, ``processDigitArticle``. So ``"hello,world"`` → ``"helloworld"`` and ``"The Cat's toy"`` →
  ``"cat 's toy"``. Its comma-between-digits regex (``(?<=\\d)(\\,)+(?=\\d)``) runs after every comma is gone, so
  it never fires — exactly like the official ``(\\d)(,)(\\d)`` on comma-free text; one implementation serves both.
* :func:`vqa_normalize` — **lenient** (``vqa_accuracy_lenient``; our earlier default): the official steps on the
  prediction *and* every answer, always (lmms-eval ``vqav2_process_results``). Deviations from the references,
  kept on purpose for that variant only: no EvalAI ``word_tokenize``; answers are normalized even when they all
  agree; and no cap on the number of periods removed (below).

Details every variant shares, as the reference scripts behave:

* Period rule: the official regex ``(?!<=\\d)(\\.)(?!\\d)`` has a mistyped look-behind that never fires, so in
  effect every ``.`` not followed by a digit is deleted (``"10."`` → ``"10"``; decimals like ``"3.5"`` survive).
  VLMEvalKit's "corrected" ``(?<!\\d)\\.(?!\\d)`` (which keeps ``"10."``) is used by no reference scorer.
* ``periodStrip.sub("", text, re.UNICODE)`` passes the flag ``re.UNICODE`` (= 32) positionally as ``count``: the
  reference scorers delete at most the **first 32** such periods (:data:`REFERENCE_PERIOD_LIMIT`); the lenient
  normalization deletes them all.
* Punctuation list: the current official one (21 characters; ``'`` and ``:`` are *not* in it — an older revision
  of ``vqaEval.py``, commit ``07aecec``, had another list and curly apostrophes in its contraction table).
* The contraction table is the official one (ASCII apostrophes). Keys it writes capitalised (``Im``, ``Ive``,
  ``Id've``, ``I'dve``) can never match after lowercasing and are omitted; ``"somebody'd"`` → ``"somebodyd"`` is
  reversed there and kept as is.
"""

from __future__ import annotations

import re

PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
REFERENCE_PERIOD_LIMIT = 32
"""``re.UNICODE``'s value, which the reference scripts pass as ``count`` to the period substitution."""

NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# The official table, ASCII apostrophes; "somebody'd" -> "somebodyd" is reversed there and kept as is.
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've", "twas": "'twas",
    "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've", "werent": "weren't",
    "whatll": "what'll", "whatre": "what're", "whats": "what's", "whatve": "what've", "whens": "when's",
    "whered": "where'd", "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll",
    "whyre": "why're", "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're",
    "youve": "you've",
}


def process_punctuation(text: str, period_limit: int = 0) -> str:
    """Official ``processPunctuation``: delete or space out the 21 punctuation marks, then drop periods.

    A mark is *deleted* if it touches a space anywhere in the input (``"p "`` or ``" p"``) or if the input contains
    digit-comma-digit anywhere (so ``"3,000"`` → ``"3000"``); otherwise it becomes a space (``"Coca-Cola"`` →
    ``"Coca Cola"``). Then periods not followed by a digit are deleted: the first ``period_limit`` of them
    (:data:`REFERENCE_PERIOD_LIMIT` reproduces the reference scripts), or all of them when it is 0.
    """
    out = text
    comma_in_number = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or comma_in_number:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=period_limit)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lowercase, number words → digits, drop articles, expand contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def _flatten(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


def vqa_eval_prediction(text: str) -> str:
    """Official ``vqaEval.py`` processing of a prediction (the human answers follow another rule, see ``vqa.py``)."""
    return process_digit_article(process_punctuation(_flatten(text), REFERENCE_PERIOD_LIMIT))


def evalai_word_tokenize(text: str) -> str:
    """EvalAI ``word_tokenize``: lowercase, delete ``,`` and ``?``, split off ``'s``, strip."""
    return text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()


def evalai_normalize(text: str) -> str:
    """EvalAI/MMF ``EvalAIAnswerProcessor`` (the TextVQA scorer), for predictions and human answers alike."""
    text = _flatten(evalai_word_tokenize(text))
    return process_digit_article(process_punctuation(text, REFERENCE_PERIOD_LIMIT))


def vqa_normalize(text: str) -> str:
    """The lenient normalization (``vqa_accuracy_lenient``): official steps, every period removed."""
    return process_digit_article(process_punctuation(_flatten(text)))
