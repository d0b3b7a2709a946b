"""Pretrained tiny components: the world tokenizer, the text-pretrained tiny LM and every pretext-pretrained tiny
expert, as content-addressed artifacts with the same guarantees as pre-aligned experts.

Each component is named by the key of everything it depends on (:func:`expert_payload`, :func:`lm_payload`,
:func:`tokenizer_payload`): architecture and sizes, its pretraining recipe, the world generator's version and
:data:`PRETRAINED_VERSION`. A trial finds it, in order, in

1. the **shipped store** inside the package (``eaglesearch/pretrained/<kind>/<key>/``: the files the repository
   carries so that a first run trains nothing; ``eaglesearch pretrain`` rebuilds them all from their recipes),
2. the trial's artifact store (built earlier by another trial or search),
3. nowhere: then it is built here, under a claim in the store, so concurrent trials build it once.

The expert artifact is keyed by the *preset's* resolution (its pretraining resolution): a trial that feeds the
expert another resolution gets the same weights with the position embeddings resampled, which is exactly the
"input resolution differs from the pretraining resolution" case of the paper's freeze study.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from eaglesearch.artifacts import ArtifactStore, artifact_key
from eaglesearch.data.conversation import encode_for_training
from eaglesearch.data.synthetic import GENERATOR_VERSION
from eaglesearch.data.world import text_samples, world_corpus
from eaglesearch.model import EagleModel
from eaglesearch.model.experts import VisionExpert, build_expert, get_preset, resolve_expert
from eaglesearch.model.language import build_language_model
from eaglesearch.model.tokenizer import build_offline_tokenizer
from eaglesearch.spec import ExpertSpec, LanguageModelSpec, ModelSpec, TokenizerSpec
from eaglesearch.train.build_env import BuildEnvironment
from eaglesearch.train.pretext import PretextRecipe, pretext_accuracy, pretrain_expert

PRETRAINED_VERSION = "pretrained-1"
"""Part of every pretrained component's key: bump it when a code change alters what pretraining computes."""
TINY_EXPERT, TINY_LM, WORLD_TOKENIZER = "tiny_expert", "tiny_lm", "world_tokenizer"
SHIPPED_ROOT = Path(__file__).resolve().parent.parent / "pretrained"
WEIGHTS, RECORD, HEAD = "weights.pt", "record.json", "head.pt"
Say = Callable[[str], None]


@dataclass(frozen=True)
class LMRecipe:
    """Text pretraining of the tiny LM on the world's caption + question → answer conversations."""

    steps: int = 800
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 50
    samples: int = 12000
    lm_weight: float = 0.3  # weight of the whole-sequence LM loss beside the answer loss
    seed: int = 0


@dataclass
class ComponentRecord:
    """One pretrained component a trial used: where it came from and the curve of the run that built it."""

    kind: str
    name: str
    key: str
    source: str  # "shipped", "store" or "trained"
    losses: list[tuple[int, float]]
    wall_s: float
    steps: int


def tokenizer_payload(spec: TokenizerSpec) -> dict[str, Any]:
    return {"version": PRETRAINED_VERSION, "kind": WORLD_TOKENIZER, "generator": GENERATOR_VERSION,
            "vocab_size": spec.vocab_size}


def expert_payload(spec: ExpertSpec) -> dict[str, Any] | None:
    """The key payload of a pretext-pretrained expert, or None when its preset has no pretext (random init)."""
    preset = get_preset(spec)
    if preset.pretext is None:
        return None
    recipe = PretextRecipe(pretext=preset.pretext, **dict(preset.pretext_settings))
    return {"version": PRETRAINED_VERSION, "kind": TINY_EXPERT, "generator": GENERATOR_VERSION, "family": spec.name,
            "architecture": preset.architecture, "kwargs": {k: _jsonable(v) for k, v in preset.kwargs.items()},
            "resolution": preset.resolution, "recipe": asdict(recipe)}


def lm_payload(lm: LanguageModelSpec, tokenizer: TokenizerSpec) -> dict[str, Any]:
    dump = lm.model_dump(mode="json", exclude={"freeze", "pretrained"})
    return {"version": PRETRAINED_VERSION, "kind": TINY_LM, "generator": GENERATOR_VERSION, "lm": dump,
            "tokenizer": artifact_key(tokenizer_payload(tokenizer)), "recipe": asdict(LMRecipe())}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ------------------------------------------------------------------------------------------------ builders

def build_world_tokenizer(spec: TokenizerSpec, out: Path) -> None:
    tokenizer = build_offline_tokenizer(world_corpus(), spec.vocab_size)
    tokenizer.save_pretrained(str(out))


def build_expert_weights(spec: ExpertSpec, out: Path, say: Say) -> None:
    """Pretrain the expert at its preset's resolution on its pretext and save its weights and curve."""
    payload = expert_payload(spec)
    assert payload is not None
    preset_spec = ExpertSpec(name=spec.name, preset=spec.preset, pretrained=False)
    torch.manual_seed(0)
    expert = build_expert(preset_spec)
    recipe = PretextRecipe(**payload["recipe"])
    say(f"pretraining expert {spec.name} on its pretext '{recipe.pretext}' ({recipe.steps} steps)")
    result = pretrain_expert(expert, recipe, on_log=lambda s, v: say(f"pretrain {spec.name} step {s} loss {v:.4f}")
                             if s % 100 == 0 else None)
    torch.save(result.weights, out / WEIGHTS)
    assert result.head is not None
    torch.save(result.head.state_dict(), out / HEAD)  # kept so the specialty can be checked (tests/test_pretext.py)
    _write_record(out, spec.name, result.losses, result.wall_s, recipe.steps, pretext_accuracy(expert, result.head,
                                                                                                recipe))


def build_lm_weights(lm: LanguageModelSpec, tokenizer_spec: TokenizerSpec, tokenizer: Any, out: Path,
                     say: Say) -> None:
    """Pretrain the tiny LM on the world's text: whole-sequence LM loss (weighted) plus the answer loss."""
    recipe = LMRecipe()
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    model = build_language_model(lm.model_copy(update={"pretrained": False}), tokenizer)
    model.train()
    encoded = []
    for sample in text_samples(recipe.samples, seed=f"lm/{recipe.seed}"):
        ids, labels = encode_for_training(tokenizer, sample, 0, max_length=lm.max_positions)
        encoded.append((ids, labels))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=0.01, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / recipe.warmup))
    rng = random.Random(f"eaglesearch.lm/{recipe.seed}")
    pad = tokenizer.pad_token_id
    losses: list[tuple[int, float]] = []
    running = 0.0
    say(f"pretraining the tiny LM on world text ({recipe.steps} steps)")
    for step in range(recipe.steps):
        batch = [encoded[rng.randrange(len(encoded))] for _ in range(recipe.batch_size)]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
        answer = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
        mask = (torch.arange(width)[None] < torch.tensor([len(i) for i, _ in batch])[:, None]).long()
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        every = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        flat = logits.reshape(-1, logits.shape[-1])
        loss = (F.cross_entropy(flat, answer[:, 1:].reshape(-1))
                + recipe.lm_weight * F.cross_entropy(flat, every.reshape(-1)))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        running += loss.item()
        if (step + 1) % 50 == 0:
            losses.append((step + 1, running / 50))
            running = 0.0
            if (step + 1) % 200 == 0:
                say(f"pretrain lm step {step + 1} loss {losses[-1][1]:.4f}")
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, out / WEIGHTS)
    _write_record(out, "lm", losses, time.perf_counter() - started, recipe.steps)


def _write_record(out: Path, name: str, losses: list[tuple[int, float]], wall_s: float, steps: int,
                  held_out: dict[str, float] | None = None) -> None:
    """The component's training record: its curve, cost, held-out pretext accuracy and the environment that built it
    (see :mod:`eaglesearch.train.build_env`: what a bit-for-bit rebuild needs)."""
    built_on = BuildEnvironment.current()
    (out / RECORD).write_text(json.dumps({"name": name, "losses": losses, "wall_s": wall_s, "steps": steps,
                                          "threads": built_on.threads, "held_out": held_out or {},
                                          "built_on": built_on.as_record()}, indent=1) + "\n")


# ------------------------------------------------------------------------------------------- obtaining

class PretrainedComponents:
    """Finds (shipped store → artifact store) or builds the pretrained components a model needs, and loads them."""

    def __init__(self, store: ArtifactStore, say: Say | None = None, shipped: Path | None = SHIPPED_ROOT) -> None:
        self.store = store
        self.shipped = ArtifactStore(shipped) if shipped is not None and Path(shipped).is_dir() else None
        self.say: Say = say or (lambda _msg: None)
        self.records: dict[str, ComponentRecord] = {}

    def _obtain(self, kind: str, name: str, payload: dict[str, Any], build: Callable[[Path], None]) -> Path:
        key = artifact_key(payload)
        source = "shipped"
        folder = self.shipped.get(kind, key) if self.shipped is not None else None
        if folder is None:
            built: list[bool] = []

            def run(out: Path) -> None:
                built.append(True)
                build(out)

            folder = self.store.obtain(kind, key, payload, run)
            source = "trained" if built else "store"
        if kind != WORLD_TOKENIZER and f"{kind}/{name}" not in self.records:
            info = json.loads((folder / RECORD).read_text())
            self.records[f"{kind}/{name}"] = ComponentRecord(
                kind=kind, name=name, key=key, source=source, losses=[(int(s), float(v)) for s, v in info["losses"]],
                wall_s=float(info["wall_s"]), steps=int(info["steps"]))
        return folder

    def tokenizer(self, spec: TokenizerSpec) -> Any:
        from transformers import PreTrainedTokenizerFast

        folder = self._obtain(WORLD_TOKENIZER, "world", tokenizer_payload(spec),
                              lambda out: build_world_tokenizer(spec, out))
        return PreTrainedTokenizerFast.from_pretrained(str(folder))

    def expert_state(self, spec: ExpertSpec) -> dict[str, Tensor] | None:
        payload = expert_payload(spec)
        if payload is None:
            return None
        folder = self._obtain(TINY_EXPERT, spec.name, payload, lambda out: build_expert_weights(spec, out, self.say))
        return torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)

    def lm_state(self, lm: LanguageModelSpec, tokenizer_spec: TokenizerSpec) -> dict[str, Tensor]:
        tokenizer = self.tokenizer(tokenizer_spec)
        folder = self._obtain(TINY_LM, "lm", lm_payload(lm, tokenizer_spec),
                              lambda out: build_lm_weights(lm, tokenizer_spec, tokenizer, out, self.say))
        return torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)

    def load_into(self, model: EagleModel, spec: ModelSpec) -> None:
        """Load every pretrained part ``spec`` asks for into ``model`` (built by ``build_eagle`` from ``spec``)."""
        for expert_spec in spec.experts:
            resolved = resolve_expert(expert_spec)
            if not (resolved.pretrained and resolved.checkpoint is None):
                continue
            state = self.expert_state(resolved)
            if state is not None:
                load_expert_state(model.experts[resolved.name], state)
        if spec.lm.kind == "tiny_llama" and spec.lm.pretrained:
            model.lm.load_state_dict(self.lm_state(spec.lm, spec.tokenizer))

    def needed(self, spec: ModelSpec) -> list[tuple[str, str, str]]:
        """``(kind, name, key)`` of every component ``spec`` needs, without building anything (for ``plan``)."""
        out = []
        for expert_spec in spec.experts:
            resolved = resolve_expert(expert_spec)
            payload = expert_payload(resolved) if resolved.pretrained and not resolved.checkpoint else None
            if payload is not None:
                out.append((TINY_EXPERT, resolved.name, artifact_key(payload)))
        if spec.lm.kind == "tiny_llama" and spec.lm.pretrained:
            out.append((TINY_LM, "lm", artifact_key(lm_payload(spec.lm, spec.tokenizer))))
        return out

    def available(self, kind: str, key: str) -> str | None:
        """Where a component already is: "shipped", "store", or None (it would be built)."""
        if self.shipped is not None and self.shipped.get(kind, key) is not None:
            return "shipped"
        return "store" if self.store.get(kind, key) is not None else None


def load_expert_state(expert: VisionExpert, state: dict[str, Tensor]) -> None:
    """Load pretrained weights into ``expert`` (a tiled expert's inner encoder), resampling absolute position
    embeddings when the expert runs at another resolution than it was pretrained at."""
    target = getattr(expert, "expert", expert)
    own = target.state_dict()
    fixed = {}
    for name, value in state.items():
        if name in own and own[name].shape != value.shape and "pos_embed" in name:
            value = _resample_pos_embed(value, own[name].shape, target)
        fixed[name] = value
    try:
        target.load_state_dict(fixed)
    except RuntimeError as err:
        raise ValueError(f"expert '{target.name}': its pretrained tiny weights do not fit this configuration "
                         f"({str(err).splitlines()[0]}); use its preset resolution ({target.name}@"
                         f"{target.resolution} was asked) or `preset: tiny_random`") from None


def _resample_pos_embed(value: Tensor, shape: torch.Size, expert: VisionExpert) -> Tensor:
    from timm.layers import resample_abs_pos_embed, resample_abs_pos_embed_nhwc

    if value.dim() == 4:  # SAM's NHWC table
        return resample_abs_pos_embed_nhwc(value, [shape[1], shape[2]])
    backbone = getattr(expert, "backbone", None)
    # Prefix tokens (CLS, registers) have rows of their own in the table unless the model embeds them separately.
    prefix = 0 if getattr(backbone, "no_embed_class", False) else int(getattr(backbone, "num_prefix_tokens", 0) or 0)
    side = round((shape[1] - prefix) ** 0.5)
    return resample_abs_pos_embed(value, [side, side], num_prefix_tokens=prefix)


# --------------------------------------------------------------------------------------- shipped components

WORLD_LM = LanguageModelSpec(kind="tiny_llama", pretrained=True, hidden_size=128, num_layers=2, num_heads=4,
                             num_kv_heads=2, intermediate_size=344)
"""The LM of ``experiments/tiny_world.yaml`` (a test keeps the two equal, so the shipped LM is the one used)."""
WORLD_TOKENIZER_SPEC = TokenizerSpec(kind="world", vocab_size=400)
SHIPPED_EXPERTS = ("clip", "siglip", "convnext", "sam", "pix2struct", "eva02", "dinov2")


def shipped_components() -> list[tuple[str, str, str]]:
    """``(kind, name, key)`` of every component the repository ships (``eaglesearch pretrain`` rebuilds them)."""
    out = [(WORLD_TOKENIZER, "world", artifact_key(tokenizer_payload(WORLD_TOKENIZER_SPEC))),
           (TINY_LM, "lm", artifact_key(lm_payload(WORLD_LM, WORLD_TOKENIZER_SPEC)))]
    for name in SHIPPED_EXPERTS:
        payload = expert_payload(ExpertSpec(name=name, preset="tiny"))
        assert payload is not None, f"expert '{name}' has no pretext"
        out.append((TINY_EXPERT, name, artifact_key(payload)))
    return out


def rebuild(root: Path, only: tuple[str, ...] = (), say: Say | None = None) -> list[tuple[str, str, str, float]]:
    """Build every shipped component (or those named in ``only``) into the store at ``root`` from its recipe,
    replacing what is there; ``(kind, name, key, seconds)`` per component. Bit-identical to the shipped files where
    this machine reproduces their recorded build environment (:mod:`eaglesearch.train.build_env`)."""
    say = say or (lambda _msg: None)
    store = ArtifactStore(root)
    done = []
    for kind, name, key in shipped_components():
        if only and name not in only:
            continue
        folder = Path(root) / kind / key
        if folder.exists():
            import shutil

            shutil.rmtree(folder)
        started = time.perf_counter()
        components = PretrainedComponents(store, say, shipped=None)
        if kind == WORLD_TOKENIZER:
            components.tokenizer(WORLD_TOKENIZER_SPEC)
        elif kind == TINY_LM:
            components.lm_state(WORLD_LM, WORLD_TOKENIZER_SPEC)
        else:
            components.expert_state(ExpertSpec(name=name, preset="tiny"))
        seconds = time.perf_counter() - started
        say(f"{kind}/{name} {key}: {seconds:.0f}s")
        done.append((kind, name, key, seconds))
    return done
