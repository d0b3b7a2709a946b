"""Fully sharded data parallelism (FSDP2, ``torch.distributed.fsdp.fully_shard``) for trials whose model does not
fit one device several times over.

The arithmetic is the data-parallel one of :mod:`eaglesearch.train.distributed` (every rank slices the same global
batch, backpropagates its summed token loss over the *global* answer-token count), so a k-rank FSDP run reproduces
the 1-process loss curve. What changes is where the weights live:

* **Units.** Each LM decoder layer and each expert's blocks (ViT blocks, ConvNeXt stages: what ``freeze``
  counts) is its own FSDP unit; everything else (embeddings and the tied output head, norms, expert stems, fusion,
  projector) belongs to the root unit, the :class:`~eaglesearch.model.EagleModel`. Experts are not wrapped whole:
  fusions such as LLaVA-HR call a ViT's stem and blocks one by one, outside the expert's ``forward``, and only the
  root's forward gathers every leftover parameter. Module names do not change, so state dicts keep their keys.
* **Gradient reduction.** Reduce-scatter *sums* the ranks' gradients (divide factor 1): each rank's loss is
  already divided by the global token count. With gradient accumulation only the last micro-batch syncs.
* **Mixed precision** (GPU only): bf16 parameters and compute, fp32 gradient reduction, fp32 master weights;
  on CPU everything stays fp32 (gloo has no bf16 advantage and the CPU tests compare with fp32 runs).
* **Activation checkpointing** (GPU by default): each unit (every expert block and LM layer) recomputes its
  activations in backward (the composable ``checkpoint``, which keeps module names); the LM's KV cache is turned off
  for training. The memory plan (``model/memory.py``) counts it.
* **Clipping.** Gradients are DTensor shards; the global norm is the norm over all shards
  (:func:`clip_grad_norm_`), so clipping equals the 1-process clipping.
* **State.** In-stage checkpoints are sharded: every rank writes its own shards with
  ``torch.distributed.checkpoint`` (:mod:`eaglesearch.train.checkpoint`), nothing is gathered. ``done.pt`` and
  pre-aligned expert artifacts hold *full* tensors, gathered to rank 0's CPU (:func:`full_state`,
  :func:`full_optimizer_state`): the format a 1-process run writes, readable by any world size. Loading shards a
  full state again (:func:`load_full_state`). Gathering is collective: every rank must call these functions.

Evaluation runs on rank 0 on an unsharded copy built from the gathered state
(``StagePipeline`` does it after the last stage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from eaglesearch.train.trainable import decoder_layers

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=True)


@dataclass(frozen=True)
class ShardPlan:
    """How a model is sharded: bf16 mixed precision and activation checkpointing, each on or off."""

    mixed_precision: bool = False
    activation_checkpointing: bool = False

    @classmethod
    def for_device(cls, device: torch.device) -> ShardPlan:
        """Both on CUDA (the memory is why FSDP is used); both off on CPU."""
        on_gpu = device.type == "cuda"
        return cls(mixed_precision=on_gpu, activation_checkpointing=on_gpu)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded by :func:`shard_model` (its parameters are DTensor shards)."""
    return isinstance(model, FSDPModule)


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The submodules that become FSDP units: every expert's blocks, then the LM's decoder layers."""
    units: list[nn.Module] = []
    for expert in getattr(model, "experts", {}).values():
        units.extend(expert.freezable_blocks())
    lm = getattr(model, "lm", None)
    if lm is not None:
        try:
            units.extend(decoder_layers(lm))
        except ValueError:  # an LM whose layers cannot be found is sharded as part of the root unit
            pass
    return units


def shard_model(model: nn.Module, plan: ShardPlan | None = None) -> nn.Module:
    """Shard ``model`` (already on its device, identical on every rank) over the default process group, in place;
    returns it. ``plan`` defaults to :meth:`ShardPlan.for_device` of the model's device."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("FSDP needs an initialized process group (one process per device)")
    param = next(model.parameters())
    plan = plan or ShardPlan.for_device(param.device)
    mesh = init_device_mesh(param.device.type, (dist.get_world_size(),))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if plan.mixed_precision
              else MixedPrecisionPolicy())
    if plan.activation_checkpointing:
        from torch.distributed._composable import checkpoint

        lm_config = getattr(getattr(model, "lm", None), "config", None)
        if lm_config is not None:
            lm_config.use_cache = False  # a cache filled again by the recomputation would be wrong
    for unit in shard_units(model):
        if plan.activation_checkpointing:
            checkpoint(unit)
        fully_shard(unit, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            # a plain SUM (no PREMUL_SUM, which gloo lacks): each rank's loss is over the global token count
            module.set_gradient_divide_factor(1.0)
            module.set_force_sum_reduction_for_comms(True)
    return model


def set_gradient_sync(model: nn.Module, sync: bool) -> None:
    """Turn the reduce-scatter of gradients on (the last micro-batch of a step) or off (the ones before it)."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)


def clip_grad_norm_(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients of ``params`` (DTensor shards or plain tensors) so their global 2-norm is at most
    ``max_norm``; returns the norm before clipping (the same on every rank).

    The norm of DTensor shards is a partial result; ``full_tensor()`` reduces it over the ranks, so the scale is
    the one a single process holding every gradient would compute."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return total


# ------------------------------------------------------------------------------------------------- state

def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole ``state_dict`` as full CPU tensors on rank 0 (an empty dict on the other ranks). Collective."""
    return get_model_state_dict(model, options=_FULL)


def load_full_state(model: nn.Module, state: dict[str, torch.Tensor], *, strict: bool = False) -> None:
    """Load full tensors (every rank passes the same ``state``) into the sharded ``model``. Collective."""
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, strict=strict))


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state with full tensors keyed by parameter name, on rank 0 (empty elsewhere). Collective."""
    return get_optimizer_state_dict(model, optimizer, options=_FULL)


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load what :func:`full_optimizer_state` returned (every rank passes it) into a sharded model's optimizer."""
    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))
