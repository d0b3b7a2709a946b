"""Per-GPU peak memory of one training step, estimated before anything is allocated.

A 7B model fully fine-tuned with AdamW needs about 16 bytes per trainable parameter (working weights and
gradients, an fp32 master copy and two fp32 moments): ~150 GB for Eagle-X5-7B, which does not fit one 80 GB GPU
unless those states are sharded. This module says, per trial, whether a parallelism fits:

    peak = weights + gradients + optimizer state  (replicated under ddp; ÷ GPUs under fsdp, plus one gathered unit)
         + activations of one micro-batch          (never sharded: each GPU runs its own micro-batch)

* Parameters come from a model built on the ``meta`` device with the stage's trainable set applied
  (:func:`param_split`): trainable parameters carry gradients and optimizer state, frozen ones only weights.
* LM activations are closed-form from the LM config (:func:`lm_activation_bytes`): the tensors autograd saves in
  each Llama decoder layer (RMSNorm inputs in fp32, q/k/v, the attention output, the four SwiGLU tensors), and the
  logits, which at a 32k vocabulary are as large as several layers. With activation checkpointing only each
  layer's input is kept, plus one layer's activations recomputed during backward.
* Vision activations (experts, fusion, projector) have no common formula (custom encoders included), so they are
  traced: one image goes through ``encode_images`` on ``meta`` with saved-tensor hooks that sum the bytes autograd
  keeps (:func:`vision_activation_bytes`); attention is traced as a fused kernel (q, k, v, output, log-sum-exp),
  as it runs on a GPU, rather than the full attention matrix the ``meta`` fallback would save. With activation
  checkpointing (on every GPU run) each expert block keeps only its input, plus one block's activations rebuilt
  during backward: the trace attributes saved bytes to the block that saved them (:class:`VisionActivations`).

The estimate is an upper bound for a step: gradients are counted whole beside the activations, although the
first ones are freed before the last are made. ``benchmarks/memory_plan.py`` checks it against measured peaks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

GB = 1e9
Parallelism = Literal["ddp", "fsdp"]


@dataclass(frozen=True)
class Precision:
    """Bytes per parameter (and per activation element) of one training setup."""

    name: str
    weight: int  # the working copy of every parameter
    grad: int  # per trainable parameter
    master: int  # fp32 master copy per trainable parameter (0 when the working copy is already fp32)
    activation: int  # matmul and attention outputs
    norm: int = 4  # RMSNorm inputs and outputs: HF Llama normalises in fp32 whatever the compute dtype


FP32 = Precision("fp32", weight=4, grad=4, master=0, activation=4)
"""CPU training: everything in fp32."""
BF16_MIXED = Precision("bf16-mixed", weight=2, grad=2, master=4, activation=2)
"""GPU training: bf16 weights, gradients and compute; fp32 master weights for the trainable parameters."""

OPTIMIZER_STATE_BYTES = {"adamw": 8, "sgd": 4}  # fp32 moments per trainable parameter: AdamW two, SGD momentum one


@dataclass(frozen=True)
class LMShape:
    """What the LM's activation memory depends on (a Llama-style decoder)."""

    layers: int
    hidden: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int

    @classmethod
    def from_config(cls, config: Any) -> LMShape:
        """From a transformers config (``LlamaConfig`` or any decoder config with the same field names)."""
        heads = int(config.num_attention_heads)
        return cls(layers=int(config.num_hidden_layers), hidden=int(config.hidden_size), heads=heads,
                   kv_heads=int(getattr(config, "num_key_value_heads", None) or heads),
                   intermediate=int(config.intermediate_size), vocab=int(config.vocab_size))


@dataclass(frozen=True)
class ParamSplit:
    """Parameters of a model in one stage: trainable, frozen, and the largest unit FSDP gathers at once."""

    trainable: int
    frozen: int
    largest_unit: int

    @property
    def total(self) -> int:
        return self.trainable + self.frozen


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes on one GPU (or the one CPU process) for one training step, by part."""

    weights: int
    grads: int
    optimizer: int  # master weights + optimizer moments
    gathered: int  # FSDP: the largest unit's full weights and gradients while it runs (0 under ddp)
    lm_activations: int
    logits: int
    vision_activations: int
    parallelism: Parallelism
    gpus: int
    micro_batch: int
    seq_len: int
    checkpointing: bool
    precision: str

    @property
    def activations(self) -> int:
        return self.lm_activations + self.logits + self.vision_activations

    @property
    def total(self) -> int:
        return self.weights + self.grads + self.optimizer + self.gathered + self.activations

    @property
    def total_gb(self) -> float:
        return self.total / GB

    def breakdown(self) -> str:
        """e.g. ``weights 14.8 + grads 14.8 + optimizer 88.8 + activations 9.6 (lm 3.2, logits 4.2, vision 2.2) GB``."""
        parts = [f"weights {self.weights / GB:.1f}", f"grads {self.grads / GB:.1f}",
                 f"optimizer {self.optimizer / GB:.1f}"]
        if self.gathered:
            parts.append(f"gathered {self.gathered / GB:.1f}")
        parts.append(f"activations {self.activations / GB:.1f} (lm {self.lm_activations / GB:.1f}, logits "
                     f"{self.logits / GB:.1f}, vision {self.vision_activations / GB:.1f})")
        return " + ".join(parts) + " GB"

    @property
    def setup(self) -> str:
        """e.g. ``fsdp x8, micro-batch 16 x 2048 tokens, checkpointing, bf16-mixed``."""
        ckpt = "checkpointing" if self.checkpointing else "no checkpointing"
        return (f"{self.parallelism} x{self.gpus}, micro-batch {self.micro_batch} x {self.seq_len} tokens, {ckpt}, "
                f"{self.precision}")


# ------------------------------------------------------------------------------------------- parameters

def _numel(params: list[nn.Parameter]) -> int:
    seen: set[int] = set()
    total = 0
    for p in params:
        if id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


def _units(model: nn.Module) -> list[nn.Module]:
    """What FSDP would wrap one by one: each LM decoder layer, its embeddings and head, each expert's blocks (a
    whole expert without blocks), and the fusion with the projector."""
    units: list[nn.Module] = []
    lm = getattr(model, "lm", None)
    if lm is not None:
        inner = getattr(lm, "model", lm)
        units += list(getattr(inner, "layers", []))
        units += [m for m in (lm.get_input_embeddings(), lm.get_output_embeddings()) if m is not None]
    for expert in getattr(model, "experts", {}).values():
        blocks = expert.freezable_blocks() if hasattr(expert, "freezable_blocks") else []
        units += blocks or [expert]
    for name in ("fusion", "projector"):
        if hasattr(model, name):
            units.append(getattr(model, name))
    return units or [model]


def param_split(model: nn.Module) -> ParamSplit:
    """Trainable and frozen parameter counts of ``model`` as it stands (tied tensors once), and its largest unit."""
    params = list(model.parameters())
    trainable = _numel([p for p in params if p.requires_grad])
    largest = max(_numel(list(u.parameters())) for u in _units(model))
    return ParamSplit(trainable=trainable, frozen=_numel(params) - trainable, largest_unit=largest)


# ------------------------------------------------------------------------------------------ activations

def lm_activation_bytes(lm: LMShape, micro_batch: int, seq_len: int, precision: Precision,
                        checkpointing: bool) -> tuple[int, int]:
    """(decoder-layer activations, logits) in bytes for one micro-batch of ``micro_batch`` × ``seq_len`` tokens.

    Per token and layer autograd keeps: the two RMSNorms' input and normalised output (fp32), the two normed inputs
    of the q/k/v and gate/up projections, q, k and v (k and v at ``kv_heads``), the attention output and its
    log-sum-exp, and SwiGLU's gate, SiLU(gate), up and their product (``intermediate`` wide each). Logits: the
    ``vocab``-wide output, its fp32 log-softmax kept by the loss, and the fp32 gradient that backward starts from.
    """
    tokens = micro_batch * seq_len
    h, e, n = lm.hidden, precision.activation, precision.norm
    kv = h * lm.kv_heads // lm.heads
    per_token = (4 * h * n + 2 * n  # two RMSNorms: input and output, and the per-token rsqrt
                 + 2 * h * e  # the normed inputs of the attention and MLP projections
                 + (h + 2 * kv) * e + h * e + 4 * lm.heads  # q, k, v, attention output, log-sum-exp (fp32)
                 + 4 * lm.intermediate * e)  # gate, SiLU(gate), up, SiLU(gate)·up
    final_norm = tokens * (2 * h * n + h * e)
    if checkpointing:  # each layer's input, plus one layer's activations rebuilt during its backward
        layers = lm.layers * tokens * h * e + tokens * per_token
    else:
        layers = lm.layers * tokens * per_token
    logits = tokens * lm.vocab * (e + 4 + 4)
    return layers + final_norm, logits


class _FusedAttention(torch.autograd.Function):
    """Stands in for ``scaled_dot_product_attention`` on ``meta``: keeps what a fused GPU kernel keeps for
    backward (q, k, v, output, log-sum-exp), not the full attention matrix of the math fallback."""

    @staticmethod
    def forward(ctx: Any, q: Tensor, k: Tensor, v: Tensor) -> Tensor:  # type: ignore[override]
        out = q.new_empty(*q.shape[:-1], v.shape[-1])
        lse = q.new_empty(q.shape[:-1], dtype=torch.float32)
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        q, k, v, _, _ = ctx.saved_tensors
        return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


class _FusedAttentionMode(TorchFunctionMode):
    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is F.scaled_dot_product_attention:
            q, k, v = args[:3]
            return _FusedAttention.apply(q, k, v)
        return func(*args, **(kwargs or {}))


class SavedTensorMeter:
    """Sums the bytes autograd saves for backward, each storage once, parameters excluded (they are weights).

    Bytes saved while a module of :meth:`attribute` runs are also summed per module (``by_block``), with the bytes
    of its input (``block_inputs``): what activation checkpointing of those modules changes."""

    def __init__(self, params: list[nn.Parameter]) -> None:
        self._params = {p.untyped_storage()._cdata for p in params}
        self._seen: dict[int, Tensor] = {}  # holding each tensor keeps its storage's address from being reused
        self.bytes = 0
        self.by_block: dict[int, int] = {}
        self.block_inputs: dict[int, int] = {}
        self._inside: list[int] = []

    def pack(self, tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in self._params and key not in self._seen:
            self._seen[key] = tensor
            self.bytes += storage.nbytes()
            if self._inside:
                self.by_block[self._inside[-1]] = self.by_block.get(self._inside[-1], 0) + storage.nbytes()
        return tensor

    def hooks(self) -> torch.autograd.graph.saved_tensors_hooks:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda tensor: tensor)

    def attribute(self, blocks: list[nn.Module]) -> list[Any]:
        """Count what each of ``blocks`` saves separately (returns the hook handles; remove them after)."""

        def enter(module: nn.Module, args: tuple) -> None:
            self._inside.append(id(module))
            self.block_inputs[id(module)] = sum(a.untyped_storage().nbytes() for a in args if isinstance(a, Tensor))

        def leave(module: nn.Module, args: tuple, output: Any) -> None:
            self._inside.pop()

        handles = []
        for block in blocks:
            handles += [block.register_forward_pre_hook(enter), block.register_forward_hook(leave)]
        return handles

    @property
    def checkpointed_bytes(self) -> int:
        """The bytes kept with the attributed modules checkpointed: each keeps only its input, and one module's
        activations are rebuilt at a time during backward. Modules that saved nothing (frozen, no gradient
        flowing through them) keep nothing either way."""
        saving = [block for block, size in self.by_block.items() if size > 0]
        inside = sum(self.by_block[b] for b in saving)
        return (self.bytes - inside + sum(self.block_inputs.get(b, 0) for b in saving)
                + max((self.by_block[b] for b in saving), default=0))


@dataclass(frozen=True)
class VisionActivations:
    """Bytes autograd keeps for one image through the vision side: as is, and with every expert block
    checkpointed (what the trainer does on GPU, see ``train/distributed.prepare_model`` and ``train/fsdp.py``)."""

    plain: int
    checkpointed: int


def vision_activations(model: nn.Module, image_size: int) -> VisionActivations:
    """Bytes autograd keeps for one image through ``model.encode_images`` (experts, fusion, projector), in the
    model's own dtype, with the stage's trainable set as ``requires_grad`` says, without and with activation
    checkpointing of the experts' blocks. Run it on a ``meta`` model: nothing is computed or allocated."""
    device = next(model.parameters()).device
    meter = SavedTensorMeter(list(model.parameters()))
    blocks = [block for expert in getattr(model, "experts", {}).values()
              for block in (expert.freezable_blocks() if hasattr(expert, "freezable_blocks") else [])]
    handles = meter.attribute(blocks)
    image = torch.zeros(1, 3, image_size, image_size, dtype=torch.uint8, device=device)
    was_training = model.training
    model.train()
    try:
        with torch.enable_grad(), meter.hooks():
            if device.type == "meta":
                with _FusedAttentionMode():
                    model.encode_images(image)
            else:
                model.encode_images(image)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return VisionActivations(plain=meter.bytes, checkpointed=meter.checkpointed_bytes)


def vision_activation_bytes(model: nn.Module, image_size: int) -> int:
    """:func:`vision_activations` without checkpointing."""
    return vision_activations(model, image_size).plain


# ---------------------------------------------------------------------------------------------- estimate

def estimate_memory(
    params: ParamSplit,
    lm: LMShape,
    vision_bytes_per_image: int,
    *,
    micro_batch: int,
    seq_len: int,
    precision: Precision,
    optimizer: str = "adamw",
    checkpointing: bool = False,
    parallelism: Parallelism = "ddp",
    gpus: int = 1,
    traced_bytes: int = 4,
    vision_bytes_checkpointed: int | None = None,
) -> MemoryEstimate:
    """Peak bytes per GPU for one step. ``vision_bytes_per_image`` was traced at ``traced_bytes`` per element
    (fp32 on ``meta``) and is rescaled to the precision's activation size. ``gpus`` shard the states under fsdp.
    With ``checkpointing`` the LM's layers and, when ``vision_bytes_checkpointed`` is given
    (:attr:`VisionActivations.checkpointed`), the experts' blocks are checkpointed."""
    if micro_batch < 1 or seq_len < 1 or gpus < 1:
        raise ValueError(f"micro_batch ({micro_batch}), seq_len ({seq_len}) and gpus ({gpus}) must be positive")
    weights = params.total * precision.weight
    grads = params.trainable * precision.grad
    states = params.trainable * (precision.master + OPTIMIZER_STATE_BYTES[optimizer])
    gathered = 0
    if parallelism == "fsdp":
        weights, grads, states = -(-weights // gpus), -(-grads // gpus), -(-states // gpus)
        gathered = params.largest_unit * (precision.weight + precision.grad)
    layers, logits = lm_activation_bytes(lm, micro_batch, seq_len, precision, checkpointing)
    per_image = vision_bytes_checkpointed if checkpointing and vision_bytes_checkpointed is not None \
        else vision_bytes_per_image
    vision = per_image * micro_batch * precision.activation // traced_bytes
    return MemoryEstimate(weights=weights, grads=grads, optimizer=states, gathered=gathered, lm_activations=layers,
                          logits=logits, vision_activations=vision, parallelism=parallelism, gpus=gpus,
                          micro_batch=micro_batch, seq_len=seq_len, checkpointing=checkpointing,
                          precision=precision.name)


@dataclass(frozen=True)
class MemoryInputs:
    """What one trial stage's memory depends on, apart from how it is run: its parameters, LM, traced vision
    activations, precision, optimizer and sequence length. :meth:`estimate` prices one way of running it, so the fit
    check can try the others (fsdp, more GPUs, a smaller micro-batch, checkpointing)."""

    params: ParamSplit
    lm: LMShape
    vision_bytes_per_image: int
    precision: Precision
    optimizer: str
    seq_len: int
    vision_bytes_checkpointed: int | None = None
    """Per image with the experts' blocks checkpointed (None: as without)."""

    def estimate(self, *, micro_batch: int, checkpointing: bool, parallelism: Parallelism,
                 gpus: int) -> MemoryEstimate:
        return estimate_memory(self.params, self.lm, self.vision_bytes_per_image, micro_batch=micro_batch,
                               seq_len=self.seq_len, precision=self.precision, optimizer=self.optimizer,
                               checkpointing=checkpointing, parallelism=parallelism, gpus=gpus,
                               vision_bytes_checkpointed=self.vision_bytes_checkpointed)
