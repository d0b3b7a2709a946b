"""Tokenizers: an offline byte-level BPE trained on the task's own conversations, or a hub/local tokenizer.

Conventions every tokenizer returned here follows (the data layer relies on them):

* ``<image>`` (:data:`IMAGE_TOKEN`) is a single special token; the data layer expands it to one id per visual token;
* the tokenizer has a chat template, and an assistant answer ends with the tokenizer's ``eos_token`` (for the
  offline tokenizer and any hub tokenizer without a template: ChatML with ``<|im_end|>``);
* ``pad_token`` is set.

The offline tokenizer must be trained on chat-templated text (see :func:`render_chatml`): with byte-level
pre-tokenisation an answer right after ``assistant\\n`` has no leading space, so a corpus of bare "question answer"
lines learns the wrong merges (reference/tiny_cpu.md §2).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AddedToken, AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from eaglesearch.model.pretrained import gguf_arguments, resolve_pretrained
from eaglesearch.model.special_tokens import (
    END_OF_TEXT,
    IM_END,
    IM_START,
    IMAGE_TOKEN,
    PAD_TOKEN,
    SPECIAL_TOKENS,
)
from eaglesearch.spec import TokenizerSpec

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
Turns = Sequence[tuple[str, str]]


def render_chatml(turns: Turns, add_generation_prompt: bool = False) -> str:
    """The ChatML text of ``(role, content)`` turns, identical to what :data:`CHATML_TEMPLATE` renders."""
    text = "".join(f"{IM_START}{role}\n{content}{IM_END}\n" for role, content in turns)
    return text + (f"{IM_START}assistant\n" if add_generation_prompt else "")


def render_chat(tokenizer: PreTrainedTokenizerBase, turns: Turns, add_generation_prompt: bool = False) -> str:
    """``(role, content)`` turns rendered with the tokenizer's own chat template."""
    messages = [{"role": role, "content": content} for role, content in turns]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    assert isinstance(text, str)
    return text


def build_offline_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on chat-templated ``texts`` (deterministic for the same texts and size)."""
    corpus = list(texts)
    if not corpus:
        raise ValueError("the offline tokenizer needs a non-empty training corpus (chat-templated conversations)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD_TOKEN, eos_token=IM_END,
                                 additional_special_tokens=[IMAGE_TOKEN, IM_START, END_OF_TEXT])
    hf.chat_template = CHATML_TEMPLATE
    return hf


def load_tokenizer(
    spec: TokenizerSpec,
    corpus: Callable[[], Iterable[str]] | None = None,
    cache_dir: Path | None = None,
) -> PreTrainedTokenizerFast:
    """The tokenizer ``spec`` describes.

    ``offline_bpe`` trains on ``corpus()`` (chat-templated texts). With ``cache_dir`` (which must be specific to
    the corpus and the spec) the trained tokenizer is saved there once and loaded on later calls, so ``corpus``
    is only called when needed. ``hf`` loads ``spec.name_or_path`` (hub id, local folder or ``pkg://`` package
    folder; its ``gguf_file`` when given). Reading a tokenizer out of a GGUF file parses the whole file (seconds),
    so with ``cache_dir`` (specific to the spec) it is saved there as an ordinary tokenizer once and loaded from
    there later.
    """
    if spec.kind == "offline_bpe":
        if cache_dir is not None and (Path(cache_dir) / "tokenizer.json").is_file():
            return PreTrainedTokenizerFast.from_pretrained(str(cache_dir))
        if corpus is None:
            raise ValueError("tokenizer kind 'offline_bpe' needs a training corpus: pass corpus=, a callable returning "
                             "the chat-templated training conversations")
        tokenizer = build_offline_tokenizer(corpus(), spec.vocab_size)
        if cache_dir is not None:
            _save_atomically(tokenizer, Path(cache_dir))
        return tokenizer
    assert spec.name_or_path is not None
    if cache_dir is not None and (Path(cache_dir) / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(str(cache_dir))
    tokenizer = _load_hf_tokenizer(spec.name_or_path, spec.gguf_file)
    if cache_dir is not None:
        _save_atomically(tokenizer, Path(cache_dir))
    return tokenizer


def _save_atomically(tokenizer: PreTrainedTokenizerFast, cache_dir: Path) -> None:
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cache_dir.name}.tmp-", dir=cache_dir.parent))
    tokenizer.save_pretrained(str(tmp))
    try:
        os.rename(tmp, cache_dir)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a concurrent writer got there first: keep theirs
        if not (cache_dir / "tokenizer.json").is_file():
            raise RuntimeError(f"could not save the tokenizer to {cache_dir}: the folder exists without a "
                               "tokenizer.json; delete it and retry") from None


def _load_hf_tokenizer(name_or_path: str, gguf_file: str | None = None) -> PreTrainedTokenizerFast:
    folder = resolve_pretrained(name_or_path, "tokenizer.name_or_path")
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **gguf_arguments(folder, gguf_file, "tokenizer.gguf_file"))
    except OSError as err:
        raise RuntimeError(f"could not load tokenizer '{name_or_path}' ({str(err).splitlines()[0]}); if this "
                           "machine is offline, download it elsewhere and set tokenizer.name_or_path to the local "
                           "folder (or point HF_HOME at a cache that holds it)") from None
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise TypeError(f"tokenizer '{name_or_path}' has no fast (Rust) version; eaglesearch needs a fast tokenizer")
    if not tokenizer.chat_template:
        tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in (IM_START, IM_END)],
                             special_tokens=True)
        tokenizer.chat_template = CHATML_TEMPLATE
        tokenizer.eos_token = IM_END
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
