"""The causal language model: a tiny random-init Llama built from the spec, or a pretrained checkpoint (hub id,
local folder, ``pkg://`` package folder; a GGUF file in it with ``gguf_file``).

Loading is sized for a 7B LM on every rank of a multi-GPU trial:

* **In the compute dtype** the caller asks for (:func:`load_dtype`: bf16 when the model will run on CUDA, fp32 on
  CPU), never in a wider one: Vicuna-7B is ~14 GB in bf16 instead of ~28 GB. Parameters that will train are
  widened to fp32 master weights *on the device*, after the move (``train.trainable.widen_trainable``), so host
  RAM never holds an fp32 copy.
* **Meta-device init** (``low_cpu_mem_usage``; always on in transformers 5): the model skeleton is allocated
  without memory, then the checkpoint's tensors are assigned: one copy of the weights, no random init to discard.
  A safetensors checkpoint is memory-mapped, so the ranks of one node share the page cache of the file they read.
* **SDPA attention** (``attn_implementation``), FlashAttention-2 when it is installed and the model runs on CUDA.
* **No copies of a loaded model.** A trial builds its LM several times (once per pre-aligned expert, once for the
  combined model); every build reads the checkpoint again. A GGUF file takes seconds to dequantise (SmolLM2-135M:
  ~16 s on 2 cores), so it is converted once into a safetensors folder (:func:`dequantised_checkpoint`, a disk
  cache keyed by the file) that later builds read like any checkpoint.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from eaglesearch.model.pretrained import gguf_arguments, resolve_pretrained
from eaglesearch.spec import LanguageModelSpec

CACHE_ENV = "EAGLESEARCH_CACHE"
"""Folder for converted checkpoints (default ``$XDG_CACHE_HOME/eaglesearch`` or ``~/.cache/eaglesearch``)."""


def load_dtype(device: torch.device | str) -> torch.dtype:
    """The dtype a model's weights are loaded in for ``device``: bf16 on CUDA (what autocast computes in; trainable
    parameters are widened to fp32 on the device), fp32 on CPU (no bf16 speed-up there; CPU runs stay exact)."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def attention_implementation(dtype: torch.dtype) -> str:
    """``flash_attention_2`` when flash-attn is installed, a GPU is visible and the dtype is 16-bit; else ``sdpa``
    (PyTorch's fused attention, on every device)."""
    if (dtype in (torch.bfloat16, torch.float16) and torch.cuda.is_available()
            and importlib.util.find_spec("flash_attn") is not None):
        return "flash_attention_2"
    return "sdpa"


def build_language_model(spec: LanguageModelSpec, tokenizer: PreTrainedTokenizerBase, *,
                         dtype: torch.dtype | None = None, weights: bool = True) -> PreTrainedModel:
    """The LM for ``spec`` with an embedding row for every token of ``tokenizer`` (including ``<image>``), in
    ``dtype`` (default fp32).

    ``tiny_llama``: ``LlamaConfig`` from the spec's sizes, random init (deterministic under ``torch.manual_seed``),
    tied input/output embeddings, pad/eos ids from the tokenizer, no BOS. ``hf``: the checkpoint at ``name_or_path``
    (``gguf_file`` in it when given); with ``weights=False`` only its architecture, from its config
    (:func:`language_model_config`), random init: what ``plan`` builds on the ``meta`` device. Embeddings are
    resized when the tokenizer has tokens the checkpoint lacks.
    """
    dtype = dtype or torch.float32
    if spec.kind == "tiny_llama":
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=spec.hidden_size,
            intermediate_size=spec.intermediate_size,
            num_hidden_layers=spec.num_layers,
            num_attention_heads=spec.num_heads,
            num_key_value_heads=spec.num_kv_heads,
            max_position_embeddings=spec.max_positions,
            tie_word_embeddings=spec.tie_embeddings,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            bos_token_id=None,
        )
        config._attn_implementation = attention_implementation(dtype)
        return LlamaForCausalLM(config).to(dtype)
    if weights:
        lm = _load_pretrained(spec, dtype)
    else:
        config = language_model_config(spec)
        lm = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attention_implementation(dtype))
    if len(tokenizer) > lm.get_input_embeddings().num_embeddings:  # new rows drawn around the trained ones' mean
        lm.resize_token_embeddings(len(tokenizer), mean_resizing=weights)
    if tokenizer.pad_token_id is not None:
        lm.config.pad_token_id = tokenizer.pad_token_id
    return lm


def language_model_config(spec: LanguageModelSpec) -> PretrainedConfig:
    """The transformers config of an ``hf`` LM, read without its weights: from a local folder, a ``pkg://`` folder,
    the hub cache (never the network), or the header of its GGUF file. ``ValueError`` naming what was tried."""
    assert spec.name_or_path is not None
    folder = resolve_pretrained(spec.name_or_path, "lm.name_or_path")
    extra = gguf_arguments(folder, spec.gguf_file, "lm.gguf_file")
    try:
        if extra:  # parsing a GGUF file takes seconds to tens of seconds: its config is kept beside its conversion
            if not Path(folder).is_dir():  # a hub repo: only its cached copy (the plan never downloads)
                from huggingface_hub import hf_hub_download

                folder = str(Path(hf_hub_download(folder, extra["gguf_file"], local_files_only=True)).parent)
            kept = _gguf_folder(Path(folder) / extra["gguf_file"])
            if not (kept / "config.json").is_file():
                config = AutoConfig.from_pretrained(folder, local_files_only=True, **extra)
                _write_atomically(kept, lambda out: config.save_pretrained(out), "config.json")
            return AutoConfig.from_pretrained(str(kept), local_files_only=True)
        return AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, ImportError, KeyError) as err:
        where = f"{spec.gguf_file} in {folder}" if spec.gguf_file else folder
        raise ValueError(f"could not read the config of lm '{spec.name_or_path}' ({where}): "
                         f"{str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def _load_pretrained(spec: LanguageModelSpec, dtype: torch.dtype) -> PreTrainedModel:
    assert spec.name_or_path is not None
    folder = resolve_pretrained(spec.name_or_path, "lm.name_or_path")
    extra = gguf_arguments(folder, spec.gguf_file, "lm.gguf_file")
    try:
        if extra:
            folder = str(dequantised_checkpoint(_gguf_path(folder, extra["gguf_file"])))
        attention = attention_implementation(dtype)
        try:
            return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, low_cpu_mem_usage=True,
                                                        attn_implementation=attention)
        except ValueError as err:  # an architecture without SDPA / FlashAttention-2 support: its own attention
            if attention not in str(err):
                raise
            return AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, low_cpu_mem_usage=True,
                                                        attn_implementation="eager")
    except OSError as err:
        raise RuntimeError(f"could not load language model '{spec.name_or_path}' ({str(err).splitlines()[0]}); if "
                           "this machine is offline, download it elsewhere and set lm.name_or_path to the local "
                           "folder (or point HF_HOME at a cache that holds it)") from None
    except ImportError as err:  # GGUF support needs the gguf package (and accelerate)
        raise RuntimeError(f"could not load lm.gguf_file '{spec.gguf_file}': {str(err).splitlines()[0]}; install "
                           "the missing package (pip install gguf accelerate)") from None


def cache_root() -> Path:
    """Where converted checkpoints are kept (``$EAGLESEARCH_CACHE``, else the user's cache folder)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eaglesearch"


def dequantised_checkpoint(gguf_path: Path) -> Path:
    """A safetensors folder holding the GGUF file's model dequantised to fp32 (and its config), converted on first
    use and kept under :func:`cache_root`, keyed by the file's path, size and modification time.

    The conversion is written to a temporary folder and renamed into place, so concurrent trials never read a
    half-written file (two that convert at once each write a copy; the first rename wins)."""
    target = _gguf_folder(gguf_path)
    if (target / "model.safetensors").is_file():
        return target

    def convert(out: Path) -> None:
        # transformers refuses save_pretrained on a model loaded from GGUF (it counts as quantised): write the
        # dequantised tensors (tied ones once) and a config without the GGUF marker ourselves.
        from safetensors.torch import save_model

        model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name,
                                                     dtype=torch.float32, low_cpu_mem_usage=True)
        save_model(model, str(out / "model.safetensors"), metadata={"format": "pt"})
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(out)

    _write_atomically(target, convert, "model.safetensors")
    return target


def _gguf_path(folder: str, gguf_file: str) -> Path:
    """The GGUF file on this machine: in a local folder, or downloaded from the hub repo ``folder`` names."""
    if Path(folder).is_dir():
        return Path(folder) / gguf_file
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(folder, gguf_file))


def _gguf_folder(gguf_path: Path) -> Path:
    """The cache folder of one GGUF file, keyed by its path, size and modification time."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "gguf" / f"{gguf_path.stem}-{key}"


def _write_atomically(target: Path, write: Callable[[Path], None], marker: str) -> None:
    """Run ``write`` into a temporary folder and move what it wrote into ``target`` (file by file, each with an
    atomic rename), unless ``target/marker`` appeared meanwhile: concurrent trials never read a half-written file."""
    target.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target))
    try:
        write(scratch)
        if not (target / marker).is_file():
            for item in sorted(scratch.iterdir(), key=lambda p: p.name == marker):  # the marker last
                os.replace(item, target / item.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
