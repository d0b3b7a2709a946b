"""VQA answer normalization: the official VQA evaluation's ``processPunctuation`` + ``processDigitArticle``.

Used by the VQA-accuracy metric (prediction *and* every human answer) and by the POPE yes/no parser.

Pinned (reference/metrics.md §5.1, "Normalization variants"):

* **Harness column: "punct+digit (lmms VQAv2)"** — lmms-eval ``vqav2_process_results``: ``\\n``/``\\t`` → space,
  strip, ``processPunctuation``, ``processDigitArticle``, applied to the prediction and to every ground-truth
  answer, always (not the official tool's "GT only if the 10 answers disagree, and punctuation only").
* **Period rule: the official one as it behaves**, i.e. delete every ``.`` not followed by a digit. The official
  regex ``(?!<=\\d)(\\.)(?!\\d)`` has a mistyped look-behind that never fires, so ``"10."`` → ``"10"``. We do *not*
  adopt VLMEvalKit's "corrected" ``(?<!\\d)\\.(?!\\d)`` (which keeps ``"10."``): the VQAv2/TextVQA/VizWiz servers and
  every other harness score with the effective rule, and keeping a sentence-final period after a number would
  make ``"10."`` miss the human answer ``"10"``. Decimals (``"3.5"``) survive under both rules.
* **No EvalAI ``word_tokenize`` pre-step** (it deletes ``,`` and ``?`` and splits ``'s``): so ``"hello,world"`` →
  ``"hello world"`` (EvalAI: ``"helloworld"``) and ``"The Cat's toy"`` → ``"cat's toy"`` (EvalAI:
  ``"cat 's toy"``). Scores agree on every reference vector; strings differ as listed.
* Punctuation list: the current official one (21 characters; ``'`` and ``:`` are *not* in it).
* Contractions use ASCII apostrophes (MMF/EvalAI, lmms-eval, VLMEvalKit tables), not the curly ones of the
  official file; keys the official table writes capitalised (``Im``, ``Ive``, ``Id've``, ``I'dve``) can never
  match after lowercasing and are omitted.
* The official ``periodStrip.sub(..., re.UNICODE)`` passes the flag as ``count`` (at most 32 substitutions); we
  do not reproduce that cap (it only matters for answers with more than 32 periods).
"""

from __future__ import annotations

import re

PUNCTUATION: tuple[str, ...] = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!",
)
_COMMA_BETWEEN_DIGITS = re.compile(r"(\d)(,)(\d)")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")

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


def process_punctuation(text: str) -> str:
    """Official ``processPunctuation``: delete or space out the 21 punctuation marks, then drop periods.

    A mark is *deleted* if it touches a space anywhere in the input (``"p "`` or ``" p"``) or if the input contains
    digit-comma-digit anywhere (so ``"3,000"`` → ``"3000"``); otherwise it becomes a space (``"Coca-Cola"`` →
    ``"Coca Cola"``). Then every period not followed by a digit is deleted.
    """
    out = text
    comma_in_number = _COMMA_BETWEEN_DIGITS.search(text) is not None
    for p in PUNCTUATION:
        if p + " " in text or " " + p in text or comma_in_number:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def process_digit_article(text: str) -> str:
    """Official ``processDigitArticle``: lowercase, number words → digits, drop articles, expand contractions."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def vqa_normalize(text: str) -> str:
    """The pinned VQA normalization of one answer string (prediction or human answer)."""
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
