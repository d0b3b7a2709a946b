"""A trained Eagle model as a self-contained folder: every weight, the trial spec it was trained from, its tokenizer.

The format a search keeps its winners in (``trial/run.py`` writes it at the end of a trial; ``export/`` reads it)::

    <folder>/model.safetensors   every weight of the EagleModel (experts, fusion, projector, LM); tensors that share
                                 storage (tied embeddings) are stored once, the other names in the file's metadata
    <folder>/trial.json          the TrialSpec: architecture, image size, template and generation settings
    <folder>/tokenizer/          the tokenizer (``save_pretrained``), ``<image>`` token included
    <folder>/lm/config.json      the LM's Hugging Face config, so an ``hf`` LM is rebuilt without its hub id
    <folder>/eaglesearch.json    format version, trial key and label

Everything is stored, not only what the last stage trained: loading must not need the pretrained checkpoints,
hub access or the artifact store the trial had (a frozen expert's weights are part of the model). Rebuilding
builds the architecture with nothing pretrained (random init, no download) and then loads every weight, strictly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from eaglesearch.model.build import build_eagle
from eaglesearch.model.eagle import EagleModel
from eaglesearch.model.experts.discovery import register_trial_experts
from eaglesearch.spec import LanguageModelSpec, ModelSpec, TrialSpec

FORMAT = "eaglesearch-model/1"
WEIGHTS = "model.safetensors"
SPEC = "trial.json"
TOKENIZER = "tokenizer"
LM_CONFIG = "lm"
MANIFEST = "eaglesearch.json"
# Wrappers that rename parameters without changing them (activation checkpointing, torch.compile, DDP).
_WRAPPER_PARTS = ("_checkpoint_wrapped_module.", "_orig_mod.", "module.")


@dataclass(frozen=True)
class SavedModel:
    """A model read back from its folder, ready for inference (eval mode)."""

    model: EagleModel
    tokenizer: PreTrainedTokenizerFast
    trial: TrialSpec
    manifest: dict


def _clean(name: str) -> str:
    for part in _WRAPPER_PARTS:
        name = name.replace(part, "")
    return name


def save_model_folder(model: EagleModel, tokenizer: PreTrainedTokenizerBase, trial: TrialSpec, folder: Path) -> Path:
    """Write ``model`` (on any device; copied to CPU tensor by tensor) with its spec and tokenizer into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}  # name -> the stored name it shares storage with
    first_by_storage: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for raw, tensor in model.state_dict().items():
        name = _clean(raw)
        where = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        if where in first_by_storage:
            aliases[name] = first_by_storage[where]
            continue
        first_by_storage[where] = name
        tensors[name] = tensor.detach().to("cpu").contiguous()
    save_file(tensors, str(folder / WEIGHTS), metadata={"format": FORMAT, "aliases": json.dumps(aliases)})
    (folder / SPEC).write_text(trial.model_dump_json(indent=2))
    tokenizer.save_pretrained(str(folder / TOKENIZER))
    model.lm.config.save_pretrained(str(folder / LM_CONFIG))
    manifest = {"format": FORMAT, "key": trial.key, "label": trial.label}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return folder


def missing_files(folder: Path) -> list[str]:
    need = (WEIGHTS, SPEC, MANIFEST, f"{TOKENIZER}/tokenizer.json", f"{LM_CONFIG}/config.json")
    return [name for name in need if not (folder / name).is_file()]


def _architecture(spec: ModelSpec, hidden_size: int) -> ModelSpec:
    """The spec's architecture with nothing to load: experts unpretrained; an ``hf`` LM replaced by a one-layer
    stand-in of its width (the fusion and projector are sized by it; the real LM is built from its config)."""
    experts = tuple(e.model_copy(update={"pretrained": False, "checkpoint": None}) for e in spec.experts)
    lm = spec.lm
    if lm.kind == "hf":
        lm = LanguageModelSpec(kind="tiny_llama", hidden_size=hidden_size, num_layers=1, num_heads=1, num_kv_heads=1,
                               intermediate_size=1, tie_embeddings=False)
    elif lm.pretrained:
        lm = lm.model_copy(update={"pretrained": False})
    return spec.model_copy(update={"experts": experts, "lm": lm})


def load_model_folder(folder: str | Path, device: str | torch.device = "cpu") -> SavedModel:
    """The model saved in ``folder`` by :func:`save_model_folder`, on ``device``, in eval mode."""
    folder = Path(folder)
    missing = missing_files(folder)
    if missing:
        raise FileNotFoundError(f"{folder} is not a saved eaglesearch model: it lacks {', '.join(missing)} "
                                "(write one with `eaglesearch export <search> OUT`)")
    manifest = json.loads((folder / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder / MANIFEST}: format {manifest.get('format')!r}; this eaglesearch reads {FORMAT!r} "
                         "(export the model again with this version)")
    trial = TrialSpec.model_validate_json((folder / SPEC).read_text())
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder / TOKENIZER))
    lm_config = AutoConfig.from_pretrained(str(folder / LM_CONFIG))
    register_trial_experts(trial.model.experts)  # a user's encoder is rebuilt from the declaration it carries
    model = build_eagle(_architecture(trial.model, lm_config.hidden_size), tokenizer)
    if trial.model.lm.kind == "hf":
        model.lm = AutoModelForCausalLM.from_config(lm_config)
    state = load_file(str(folder / WEIGHTS))
    with safe_open(str(folder / WEIGHTS), "pt") as handle:
        aliases = json.loads((handle.metadata() or {}).get("aliases", "{}"))
    state.update({name: state[target] for name, target in aliases.items()})
    mismatch = f"{folder / WEIGHTS} does not match the architecture in {folder / SPEC}"
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # a weight of another shape
        raise ValueError(f"{mismatch}: {str(err).splitlines()[-1].strip()}") from None
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(f"{mismatch}: {len(result.missing_keys)} weights missing (e.g. {result.missing_keys[:3]}), "
                         f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:3]})")
    model.to(device).eval()
    return SavedModel(model=model, tokenizer=tokenizer, trial=trial, manifest=manifest)
