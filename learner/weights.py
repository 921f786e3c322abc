"""Full policy weights out of a (possibly ZeRO-3 partitioned, possibly LoRA) training module.

Yields `(hf_name, tensor)` one module at a time, so that at ZeRO-3 only one module's parameters are
gathered at once, and with LoRA each adapted weight is merged on the fly as W + scale * B @ A
(`get_delta_weight`), without touching the trainable model. Names are those of the base Hugging
Face checkpoint, which vLLM's `load_weights` understands.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn


def _gathered(params: list[nn.Parameter], zero_stage: int):
    if zero_stage == 3 and params:
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def iter_full_weights(module: nn.Module, zero_stage: int) -> Iterator[tuple[str, torch.Tensor]]:
    """Every weight of the policy in HF naming, detached (a view; copy it before the next step).

    A tied `lm_head.weight` is yielded too: vLLM on CPU keeps its own repacked copy of the LM head,
    and leaving it out makes the rollout sample from a stale head (measured: log-prob gap 0.99 vs
    1e-6; see "Weight sync" in docs/design.md). Loaders that tie weights simply ignore it.
    """
    is_peft = hasattr(module, "get_base_model")
    base = module.get_base_model() if is_peft else module
    for mod_name, mod in base.named_modules():
        own = [(n, p) for n, p in mod.named_parameters(recurse=False)]
        if not own or ".lora_" in f".{mod_name}" or mod_name.split(".")[-1].startswith("lora_"):
            continue
        with _gathered([p for _, p in own] + _lora_params(mod, base, mod_name), zero_stage):
            for pname, param in own:
                full = f"{mod_name}.{pname}" if mod_name else pname
                name = full.replace(".base_layer.", ".")
                tensor = param.detach()
                if is_peft and mod_name.endswith(".base_layer") and pname == "weight":
                    parent = base.get_submodule(mod_name.removesuffix(".base_layer"))
                    tensor = tensor + _delta(parent).to(tensor.dtype)
                yield name, tensor


def _lora_params(mod: nn.Module, base: nn.Module, mod_name: str) -> list[nn.Parameter]:
    """At ZeRO-3 the adapter weights must be gathered together with the base weight they modify."""
    if not mod_name.endswith(".base_layer"):
        return []
    parent = base.get_submodule(mod_name.removesuffix(".base_layer"))
    return [p for n, p in parent.named_parameters() if "lora_" in n]


def _delta(layer: nn.Module) -> torch.Tensor:
    adapters = [a for a in getattr(layer, "active_adapters", []) if a in getattr(layer, "lora_A", {})]
    delta = None
    for adapter in adapters:
        d = layer.get_delta_weight(adapter)
        delta = d if delta is None else delta + d
    return delta if delta is not None else torch.zeros(())
