"""The policy's forward over sampled rows: log-probs [n, T] of the response tokens and their
token entropy, differentiable. The update's loss and every no-grad scoring pass (π_old, π_ref,
the post-update diagnostics) run through ``response_logprobs``: the one place that computes
them, and the one to wrap (autocast, a sharded model).

How temperature enters: row n's tokens are scored under softmax(logits / τ_n) over the FULL
vocabulary, τ_n the temperature it was sampled at (or 1; the caller decides). That is the
quantity the sampler stores (agpo.rollout.sampler), so with top_p = 1 the importance ratio
π_θ / π_old compares the distribution that produced the samples.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from agpo.ops import check_temperatures, chunked_logprobs_entropy, entropy_from_logits, logprobs_from_logits
from agpo.policy.prompt_cache import CACHE, PromptCache
from agpo.types import Rollout

LOGIT_CHUNK = 1024
"""Tokens whose full-vocabulary logits exist at once when scoring (≈ 200 MB of float32 on a
49k vocabulary, whatever the micro-batch)."""


def split_head(model: torch.nn.Module) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(decoder, head): hidden states [n, L, H] from the decoder, logits [c, V] from head(hidden
    [c, H]), equal to the model's own logits; None where agpo does not know the model's head
    (a logit scale, or no get_decoder / output embeddings) and for a model sharded with FSDP2
    (agpo.train.fsdp): score through full logits then."""
    from torch.distributed.fsdp import FSDPModule

    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
        return None
    if isinstance(model, FSDPModule):  # its submodules called directly would skip the root's gathering
        return None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError, ValueError):
        return None
    if decoder is None or head is None or decoder is model:
        return None
    cap = getattr(cfg, "final_logit_softcapping", None)  # Gemma 2: logits = cap·tanh(z / cap)
    if cap:
        return decoder, lambda h: torch.tanh(head(h) / cap) * cap
    return decoder, head


def scoring_net(model: torch.nn.Module) -> torch.nn.Module:
    """The module ``response_logprobs`` runs the rows through: the decoder when the head is
    known (``split_head``), else the whole model. A ``PromptCache`` for it is built with it."""
    split = split_head(model)
    return split[0] if split is not None else model


def response_logprobs(
    model: torch.nn.Module,
    rows: Rollout,
    temperatures: torch.Tensor,
    with_entropy: bool = True,
    chunk: int = LOGIT_CHUNK,
    share_prompts: bool = True,
    prompts: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] of the response tokens under softmax(logits/τ_row), temperatures [n],
    and, optionally, the token entropy [n, T] of that distribution. Differentiable; masked
    positions hold 0.

    The decoder runs once over the rows, a prompt that rows repeat once (``share_prompts``, or
    ``prompts``: a KV cache of the rows' prompts from ``PromptCache.for_rows``; see
    ``response_states``); the LM head, softmax and entropy then run ``chunk`` response tokens at
    a time (``agpo.ops.chunked_logprobs_entropy``), so memory does not grow with rows × tokens ×
    vocabulary.
    """
    check_temperatures(temperatures)  # logits / τ: NaN log-probs outside the range
    width = rows.response_ids.shape[1]
    # The forward skips all-padding columns (results padded back); a given cache fixes the prompt's.
    rows = rows.trim(prompt=prompts is None)
    split = split_head(model)
    mask = rows.response_mask.float()
    tensors = (rows.prompt_ids, rows.prompt_mask, rows.response_ids, rows.response_mask)
    if split is None:
        logits = response_logits(model, *tensors, temperatures, share_prompts, prompts)
        logprobs = logprobs_from_logits(logits, rows.response_ids)
        entropy = entropy_from_logits(logits) if with_entropy else None
    else:
        decoder, head = split
        n, t = rows.response_ids.shape
        hidden = response_states(decoder, *tensors, "last_hidden_state", share_prompts, prompts)  # [n, T, H]
        tau = temperatures.to(hidden.device).float()
        lp, ent = chunked_logprobs_entropy(
            head, hidden.reshape(n * t, -1), rows.response_ids.reshape(-1),
            None if bool((tau == 1.0).all()) else tau.repeat_interleave(t), chunk)  # [n·T]
        logprobs, entropy = lp.view(n, t), (ent.view(n, t) if with_entropy else None)
    logprobs = F.pad(logprobs * mask, (0, width - logprobs.shape[1]), value=0.0)
    entropy = F.pad(entropy * mask, (0, width - entropy.shape[1]), value=0.0) if entropy is not None else None
    return logprobs, entropy


def response_logits(
    model: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    temperatures: torch.Tensor,
    share_prompts: bool = True,
    prompts: object | None = None,
) -> torch.Tensor:
    """Tempered logits predicting each response token: logits / τ_row, [n, T, V].

    prompt_ids/prompt_mask [n, P] (left-padded), response_ids/response_mask [n, T], temperatures
    [n]; ``share_prompts`` and ``prompts``: see ``response_states``. Differentiable.
    """
    logits = response_states(model, prompt_ids, prompt_mask, response_ids, response_mask,
                             "logits", share_prompts, prompts).float()  # [n, T, V]
    temperatures = temperatures.to(logits.device).float()
    # x / 1 == x exactly, so at τ = 1 (the usual case) skip a full-vocabulary [n, T, V] tensor
    # and its backward; the check is one host sync, far cheaper than that tensor on a real vocab.
    if bool((temperatures == 1.0).all()):
        return logits
    return logits / temperatures.view(-1, 1, 1)


def response_states(
    net: torch.nn.Module,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    response_ids: torch.Tensor,
    response_mask: torch.Tensor,
    field: str,
    share_prompts: bool = True,
    prompts: object | None = None,
) -> torch.Tensor:
    """``net``'s output ``field`` (``logits`` of a causal LM, ``last_hidden_state`` of its
    decoder) at the positions that predict the response tokens, [n, T, X]: the last prompt
    position and every response position but the last.

    prompt_ids/prompt_mask [n, P] (left-padded), response_ids/response_mask [n, T] (right-padded).
    ``prompts``: a transformers KV cache holding each row's prompt but its last token
    (``PromptCache.for_rows``); the rows then run only their last prompt token and their response
    against it. Without one, ``share_prompts`` builds it for these rows when some repeat a prompt
    (a group's G samples): each distinct prompt runs once.
    """
    t = response_ids.shape[1]
    if prompts is None and share_prompts:
        shared = PromptCache.build(net, prompt_ids, prompt_mask)
        prompts = shared.for_rows(shared.inverse) if shared is not None else None
    if prompts is not None:
        p = prompts.get_seq_length() + 1  # the cache's columns + the rows' last prompt token
        ids = torch.cat([prompt_ids[:, -1:], response_ids[:, :-1]], dim=1)  # [n, T]
        attn = torch.cat([prompt_mask[:, -p:], response_mask[:, :-1]], dim=1)  # [n, P+T-1]: cache + own
        pos = (attn.cumsum(-1) - 1).clamp_min(0)[:, p - 1 :]
        out = net(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True, **{CACHE: prompts})
        if prompts.get_seq_length() == attn.shape[1]:
            return getattr(out, field)
        # A model that did not extend the cache did not read it either: run the rows whole.
    ids = torch.cat([prompt_ids, response_ids], dim=1)  # [n, P+T]
    attn = torch.cat([prompt_mask, response_mask], dim=1)
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    # Position P-1+i predicts response token i; the last position predicts nothing we need.
    keep = {"logits_to_keep": t + 1} if field == "logits" else {}
    out = net(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=False, **keep)
    return getattr(out, field)[:, -(t + 1) : -1]
