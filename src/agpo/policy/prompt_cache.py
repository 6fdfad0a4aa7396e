"""A prompt that several rows repeat (a group's G samples) runs once: the KV-cache helpers that
scoring, the update and the sampler's prefill share, and ``PromptCache``.

A causal model's states at the prompt do not depend on what follows, so the G rows of a group
may attend to one copy of their prompt's keys and values instead of each running it: the same
function of the weights, only float rounding differs.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect

import torch


def _cache_name() -> str:
    """The forward's KV-cache argument and output field: ``cache`` from transformers 5.24 on
    (``past_key_values`` warns there and goes in 5.40), ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in fields else "past_key_values"


CACHE = _cache_name()


def distinct_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first [u], inverse [n]): a row holding each of the u distinct prompts (ids and mask) of
    rows prompt_ids/prompt_mask [n, P] and, for every row, which of them it holds; None when no
    prompt repeats."""
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)  # [n, 2P]
    _, inverse = torch.unique(key, dim=0, return_inverse=True)  # [n] in 0..u-1
    u = int(inverse.max()) + 1
    if u == key.shape[0]:
        return None
    # The first row of each distinct prompt: scatter_reduce's amin over row numbers.
    rows = torch.arange(key.shape[0], device=key.device)
    first = torch.full((u,), key.shape[0], device=key.device, dtype=rows.dtype).scatter_reduce(0, inverse, rows, "amin")
    return first, inverse


def selectable(cache: object) -> bool:
    """Whether the KV cache can keep a subset of its rows (``batch_select_indices``): transformers'
    Cache of layers that do; legacy tuple caches and some layer kinds cannot."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def keeps_cache(net: torch.nn.Module) -> bool:
    """False where a forward in training ignores the KV cache (transformers drops it under
    gradient checkpointing), so a shared prompt would silently not be seen."""
    # Asked of the transformers model itself: through a peft wrapper the old name would be read
    # too, and transformers warns that it is deprecated.
    base = net.get_base_model() if hasattr(net, "get_base_model") else net
    flag = "is_activation_checkpointing" if hasattr(type(base), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return not (net.training and getattr(base, flag, False))


class PromptCache:
    """The KV cache of the distinct prompts among some rows, each prompt's last token left out,
    computed once.

    The rows' own forward (their last prompt token, which predicts the first response token, and
    their response) then attends to ``for_rows(slots)``: the cache indexed out to them.

    ``deferred``: for an update's whole mini-batch, whose micro-batches (rows of similar length
    from any group) each run their own forward and backward. They index detached copies of the
    cache, which collect their gradient; ``backward()`` then sends it through the prompts'
    forward once, before the optimizer step. The prompts' activations stay alive until then.
    Without ``deferred`` the gradient flows back through the index as usual.
    """

    def __init__(self, cache: object, inverse: torch.Tensor, deferred: bool) -> None:
        self.inverse = inverse
        """[n] the distinct prompt of each row the cache was built from (0..u-1)."""
        self._cache = cache  # transformers' Cache of the u prompts: its layers' kinds and lengths
        outputs = [(layer.keys, layer.values) for layer in cache.layers]  # per layer [u, H, P-1, D]
        self._outputs = outputs if deferred else None
        self._kv = [(k.detach().requires_grad_(k.requires_grad), v.detach().requires_grad_(v.requires_grad))
                    for k, v in outputs] if deferred else outputs

    @classmethod
    def build(cls, net: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
              deferred: bool = False) -> PromptCache | None:
        """Run the distinct prompts among rows prompt_ids/prompt_mask [n, P] (left-padded), all
        but their last column, through ``net`` (a causal LM or its decoder). None when no prompt
        repeats, a prompt is one token wide, or ``net`` cannot serve a cache that way (gradient
        checkpointing in training drops it; a cache without per-layer keys and values)."""
        if prompt_ids.shape[1] < 2 or not keeps_cache(net):
            return None
        distinct = distinct_prompts(prompt_ids, prompt_mask)
        if distinct is None:
            return None
        first, inverse = distinct
        ids, mask = prompt_ids[first, :-1], prompt_mask[first, :-1]  # [u, P-1]
        # A causal LM needs no prompt logits; its decoder computes none.
        keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(net.forward).parameters else {}
        out = net(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0),
                  use_cache=True, **keep)
        cache = getattr(out, CACHE)
        layers = getattr(cache, "layers", None)
        if not layers or not all(hasattr(x, "keys") and hasattr(x, "values") for x in layers):
            return None
        return cls(cache, inverse, deferred)

    def for_rows(self, slots: torch.Tensor) -> object:
        """A transformers KV cache of the rows' prompts: row i holds distinct prompt slots[i],
        [m, H, P-1, D] per layer (a sliding-window layer holds the window's last keys). Fresh on
        every call (the forward extends it); its layers keep their kind and the length seen."""
        cache = copy.copy(self._cache)
        cache.layers = [copy.copy(layer) for layer in self._cache.layers]
        for layer, (k, v) in zip(cache.layers, self._kv, strict=True):
            layer.keys, layer.values = k[slots], v[slots]
        return cache

    def backward(self) -> None:
        """(deferred) The gradient the rows' forwards left on the cache, through the prompts'
        forward; once, after the last of them."""
        if self._outputs is None:
            return
        pairs = [(out, kv.grad) for outs, kvs in zip(self._outputs, self._kv, strict=True)
                 for out, kv in zip(outs, kvs, strict=True) if kv.grad is not None]
        self._outputs = None  # the graph is freed by the backward
        if pairs:
            torch.autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])
