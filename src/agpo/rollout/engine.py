"""Batched sampling and scoring on any transformers causal LM (CPU or GPU).

How temperature enters: every row n has its own temperature τ_n. Sampling draws from
softmax(logits / τ_n) (optionally restricted to the top-p nucleus), and the log-probs stored in
the Rollout are log softmax(logits / τ_n) of the drawn token over the FULL vocabulary.
``token_logprobs`` recomputes exactly that quantity, so with top_p = 1 the importance ratio
π_θ / π_old compares the distribution that produced the samples. With top_p < 1 the sampler is
truncated and the stored value is not the true sampling probability; training rejects that
unless explicitly allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from agpo.ops import chunked_logprobs_entropy, entropy_from_logits, logprobs_from_logits
from agpo.rollout.config import SamplingConfig
from agpo.types import Rollout

LOGIT_CHUNK = 1024
"""Tokens whose full-vocabulary logits exist at once when scoring (≈ 200 MB of float32 on a
49k vocabulary, whatever the micro-batch)."""


def _cache_name() -> str:
    """The forward's KV-cache argument and output field: ``cache`` from transformers 5.24 on
    (``past_key_values`` warns there and goes in 5.40), ``past_key_values`` before."""
    from transformers.modeling_outputs import CausalLMOutputWithPast

    fields = {f.name for f in dataclasses.fields(CausalLMOutputWithPast)}
    return "cache" if "cache" in fields else "past_key_values"


CACHE = _cache_name()


def prepare_tokenizer(tokenizer) -> None:  # noqa: ANN001 — any HF tokenizer
    """Left padding (decoder-only batches must end at the same column) and a pad token."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def eos_ids(model: torch.nn.Module, tokenizer) -> list[int]:  # noqa: ANN001
    """Every token id that ends a response: the tokenizer's EOS and the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    ids.update(extra if isinstance(extra, list) else [extra])
    return sorted(i for i in ids if i is not None)


def sample(
    model: torch.nn.Module,
    tokenizer,  # noqa: ANN001 — any HF tokenizer
    prompts: Sequence[str],
    temperatures: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None = None,
) -> Rollout:
    """Sample one response per prompt string (prompts already repeated G times, grouped).

    temperatures [N]: the temperature of each row. Decodes ``cfg.batch_size`` rows at a time
    with a KV cache; a row stops at its first EOS (kept in the response and its mask), and
    finished rows leave the decode batch once they are half of it (long-tailed lengths then
    cost the tail's rows, not the whole batch's).
    Returns a Rollout with prompt_ids/prompt_mask [N, P], response_ids/response_mask/logprobs
    [N, T], truncated [N] and the decoded texts (special tokens stripped).
    """
    prepare_tokenizer(tokenizer)
    temperatures = temperatures.detach().float().reshape(-1).cpu()
    if len(prompts) != temperatures.numel():
        raise ValueError(f"{len(prompts)} prompts but {temperatures.numel()} temperatures")
    was_training = model.training
    model.eval()
    # inference_mode, not no_grad: no version counters or views to track, ≈ 8% less time per
    # decoded token on a tiny model, where Python overhead is most of a forward.
    with torch.inference_mode():
        parts = [
            _sample_batch(model, tokenizer, list(prompts[i : i + cfg.batch_size]),
                          temperatures[i : i + cfg.batch_size], cfg, generator)
            for i in range(0, len(prompts), cfg.batch_size)
        ]
    model.train(was_training)
    rollout = concat(parts, tokenizer.pad_token_id)
    # Inference tensors may not enter autograd, and the update's loss uses the masks and
    # log-probs: hand back ordinary copies (small: [N, T] at most).
    return Rollout(**{f.name: _ordinary(getattr(rollout, f.name)) for f in dataclasses.fields(rollout)})


def _ordinary(x: object) -> object:
    return x.clone() if isinstance(x, torch.Tensor) and x.is_inference() else x


def _sample_batch(
    model: torch.nn.Module,
    tokenizer,  # noqa: ANN001
    prompts: list[str],
    temperatures: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None,
) -> Rollout:
    device = next(model.parameters()).device
    enc = tokenizer(prompts, return_tensors="pt", padding=True)
    prompt_ids = enc["input_ids"].to(device)  # [n, P]
    prompt_mask = enc["attention_mask"].to(device)  # [n, P]
    n, width = prompt_ids.shape[0], cfg.max_new_tokens
    # At τ = 1 everywhere skip the per-token [n, V] multiply (x · 1 == x exactly).
    inv_tau = None if bool((temperatures == 1.0).all()) else (1.0 / temperatures).to(device).unsqueeze(-1)  # [n, 1]
    stop = torch.tensor(eos_ids(model, tokenizer), device=device)
    pad = tokenizer.pad_token_id

    response_ids = prompt_ids.new_full((n, width), pad)  # [n, T]
    response_mask = torch.zeros(n, width, dtype=torch.long, device=device)  # [n, T]
    logprobs = torch.zeros(n, width, device=device)  # [n, T]
    attn = prompt_mask
    # Left padding shifts every row; positions count real tokens only so a padded row sees the
    # same positions as it would alone.
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    next_logits, cache = _prefill(model, prompt_ids, attn, pos)  # [n, V] and every row's KV cache
    compactable = _selectable(cache)
    rows = torch.arange(n, device=device)  # the prompt row of each row still in the decode batch
    done = torch.zeros(n, dtype=torch.bool, device=device)  # [m]: finished, still in the batch
    for t in range(width):
        logits = next_logits.float()  # [m, V]
        logp = F.log_softmax(logits if inv_tau is None else logits * inv_tau, dim=-1)  # [m, V]
        tok = _draw(logp, cfg.top_p, _race_noise(n, logp.shape[-1], rows, device, generator))  # [m]
        alive = ~done
        live = rows[alive]  # the prompt rows whose response takes this token
        response_ids[live, t] = tok[alive]
        logprobs[live, t] = logp.gather(-1, tok.unsqueeze(-1)).squeeze(-1)[alive]
        response_mask[live, t] = 1
        done = done | torch.isin(tok, stop)
        finished = int(done.sum())  # one host sync per token; a forward costs far more
        if finished == done.numel():
            width = t + 1
            break
        # Finished rows leave the decode batch once they are half of it: re-indexing the cache is
        # a copy, paid back by every later forward running on the smaller batch.
        if compactable and 2 * finished >= done.numel():
            keep = (~done).nonzero().squeeze(-1)
            cache.batch_select_indices(keep)
            rows, attn, pos, tok, done = rows[keep], attn[keep], pos[keep], tok[keep], done[keep]
            inv_tau = None if inv_tau is None else inv_tau[keep]
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=-1)
        pos = pos[:, -1:] + 1
        next_logits = model(input_ids=tok.masked_fill(done, pad).unsqueeze(-1), attention_mask=attn,
                            position_ids=pos, use_cache=True, **{CACHE: cache}).logits[:, -1]

    response_ids, response_mask, logprobs = response_ids[:, :width], response_mask[:, :width], logprobs[:, :width]
    lengths = response_mask.sum(-1)  # [n] ≥ 1: every row draws at least one token
    last = response_ids.gather(-1, (lengths - 1).unsqueeze(-1)).squeeze(-1)  # [n]
    texts = tokenizer.batch_decode(
        [row[:k] for row, k in zip(response_ids.tolist(), lengths.tolist(), strict=True)],
        skip_special_tokens=True,
    )
    return Rollout(
        prompt_ids=prompt_ids,
        prompt_mask=prompt_mask,
        response_ids=response_ids,
        response_mask=response_mask,
        logprobs=logprobs,
        temperatures=temperatures.to(device),
        truncated=~torch.isin(last, stop),
        texts=texts,
    )


def _prefill(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
             pos: torch.Tensor) -> tuple[torch.Tensor, object]:
    """The prompt forward of a decode batch: the last position's logits [n, V] and the KV cache of
    all n rows. A prompt that several rows repeat (a group's G samples) runs once and its cache
    is indexed out to them (the same values, rounded as a forward over fewer rows)."""
    distinct = _distinct_prompts(prompt_ids, prompt_mask)
    src = slice(None) if distinct is None else distinct[0]
    out = model(input_ids=prompt_ids[src], attention_mask=prompt_mask[src], position_ids=pos[src],
                use_cache=True, logits_to_keep=1)
    cache = getattr(out, CACHE)
    if distinct is None:
        return out.logits[:, -1], cache
    if not _selectable(cache):  # a cache that cannot be indexed: every row runs its prompt
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True,
                    logits_to_keep=1)
        return out.logits[:, -1], getattr(out, CACHE)
    cache.batch_select_indices(distinct[1])
    return out.logits[distinct[1], -1], cache


def _selectable(cache: object) -> bool:
    """Whether the KV cache can keep a subset of its rows (``batch_select_indices``): transformers'
    Cache of layers that do; legacy tuple caches and some layer kinds cannot."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(hasattr(layer, "batch_select_indices") for layer in layers)


def _race_noise(
    n: int, vocab: int, rows: torch.Tensor, device: torch.device, generator: torch.Generator | None,
) -> torch.Tensor:
    """Exp(1) noise [m, V] for the exponential race, drawn for all n rows of the batch and then
    restricted to the m rows still decoding.

    Drawing for every row keeps each row's noise independent of which rows already left the
    batch, so dropping finished rows changes no sample (up to the rounding of a forward over
    fewer rows).
    """
    where = generator.device if generator is not None else device  # a generator draws on its own device
    q = torch.empty(n, vocab, device=where).exponential_(1.0, generator=generator).to(device)  # [n, V]
    return q if rows.numel() == n else q[rows]


def _draw(logp: torch.Tensor, top_p: float, noise: torch.Tensor) -> torch.Tensor:
    """One token per row from exp(logp) [m, V], restricted to the top-p nucleus when top_p < 1.

    The exponential race: argmax p / q with q ~ Exp(1) [m, V] draws token i with probability
    p_i / Σp. It is the algorithm (and, with the same generator, the very stream) that
    torch.multinomial uses for one sample.
    """
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # Drop a token when the mass before it already reaches top_p (the first always stays).
        drop = (sorted_p.cumsum(-1) - sorted_p) >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return (probs / noise).argmax(-1)


def _pad_right(x: torch.Tensor, width: int, value: float) -> torch.Tensor:
    return F.pad(x, (0, width - x.shape[1]), value=value)


def _pad_left(x: torch.Tensor, width: int, value: float) -> torch.Tensor:
    return F.pad(x, (width - x.shape[1], 0), value=value)


def concat(parts: list[Rollout], pad: int) -> Rollout:
    """Join rollouts row-wise: prompts re-padded on the left, responses on the right."""
    if len(parts) == 1:
        return parts[0]
    p = max(r.prompt_ids.shape[1] for r in parts)
    t = max(r.response_ids.shape[1] for r in parts)
    return Rollout(
        prompt_ids=torch.cat([_pad_left(r.prompt_ids, p, pad) for r in parts]),
        prompt_mask=torch.cat([_pad_left(r.prompt_mask, p, 0) for r in parts]),
        response_ids=torch.cat([_pad_right(r.response_ids, t, pad) for r in parts]),
        response_mask=torch.cat([_pad_right(r.response_mask, t, 0) for r in parts]),
        logprobs=torch.cat([_pad_right(r.logprobs, t, 0.0) for r in parts]),
        temperatures=torch.cat([r.temperatures for r in parts]),
        truncated=torch.cat([r.truncated for r in parts]),
        texts=[s for r in parts for s in r.texts],
    )


def trim_padding(rows: Rollout, prompt: bool = True) -> Rollout:
    """The same rows without the columns that are padding in every row: leading prompt columns
    (left padding; not with ``prompt=False``) and trailing response columns (past every row's
    end), [n, P'] / [n, T'].

    Exact: positions count real tokens only and attention is causal, so no kept token's logits
    change. The forward and backward then skip those columns entirely, which matters once rows
    of similar length share a micro-batch (the update sorts them so). Costs one host sync.
    """
    keep_p = rows.prompt_mask.any(0)  # [P]
    keep_t = rows.response_mask.any(0)  # [T]
    # At least one prompt column stays: its position predicts the first response token.
    p0 = min(int(keep_p.long().argmax()), max(rows.prompt_ids.shape[1] - 1, 0)) if prompt else 0
    t = max(int(keep_t.nonzero().max()) + 1 if bool(keep_t.any()) else 1, 1)
    if p0 == 0 and t == rows.response_ids.shape[1]:
        return rows
    return Rollout(
        prompt_ids=rows.prompt_ids[:, p0:],
        prompt_mask=rows.prompt_mask[:, p0:],
        response_ids=rows.response_ids[:, :t],
        response_mask=rows.response_mask[:, :t],
        logprobs=rows.logprobs[:, :t],
        temperatures=rows.temperatures,
        truncated=rows.truncated,
        texts=rows.texts,
    )


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
    [n]; ``share_prompts`` and ``prompts``: see ``response_states``. Differentiable: the
    training update calls this under autograd.
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


def _distinct_prompts(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first [u], inverse [n]): a row holding each of the u distinct prompts (ids and mask) and,
    for every row, which of them it holds; None when no prompt repeats."""
    key = torch.cat([prompt_ids, prompt_mask.to(prompt_ids.dtype)], dim=1)  # [n, 2P]
    _, inverse = torch.unique(key, dim=0, return_inverse=True)  # [n] in 0..u-1
    u = int(inverse.max()) + 1
    if u == key.shape[0]:
        return None
    # The first row of each distinct prompt: scatter_reduce's amin over row numbers.
    rows = torch.arange(key.shape[0], device=key.device)
    first = torch.full((u,), key.shape[0], device=key.device, dtype=rows.dtype).scatter_reduce(0, inverse, rows, "amin")
    return first, inverse


class PromptCache:
    """The KV cache of the distinct prompts among some rows, each prompt's last token left out,
    computed once: a group's G samples share their prompt, and a causal model's states at the
    prompt do not depend on what follows, so the prompt need not run G times.

    The rows' own forward (their last prompt token, which predicts the first response token, and
    their response) then attends to ``for_rows(slots)``: the cache indexed out to them. The same
    function of the weights; only float rounding differs.

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
        if prompt_ids.shape[1] < 2 or not _keeps_cache(net):
            return None
        distinct = _distinct_prompts(prompt_ids, prompt_mask)
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


def _keeps_cache(net: torch.nn.Module) -> bool:
    """False where a forward in training ignores the KV cache (transformers drops it under
    gradient checkpointing), so a shared prompt would silently not be seen."""
    flag = "is_activation_checkpointing" if hasattr(type(net), "is_activation_checkpointing") else "is_gradient_checkpointing"
    return not (net.training and getattr(net, flag, False))


def split_head(model: torch.nn.Module) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]] | None:
    """(decoder, head): hidden states [n, L, H] from the decoder, logits [c, V] from head(hidden
    [c, H]), equal to the model's own logits; None where agpo does not know the model's head
    (a logit scale, or no get_decoder / output embeddings): score through full logits then."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "logit_scale", None) not in (None, 1, 1.0):
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


def response_logprobs(
    model: torch.nn.Module,
    rows: Rollout,
    temperatures: torch.Tensor,
    with_entropy: bool = True,
    chunk: int = LOGIT_CHUNK,
    share_prompts: bool = True,
    prompts: object | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs [n, T] of the response tokens under softmax(logits/τ_row) and, optionally, the
    token entropy [n, T] of that distribution. Differentiable; masked positions hold 0.

    The decoder runs once over the rows, a prompt that rows repeat once (``share_prompts``, or
    ``prompts``: a KV cache of the rows' prompts from ``PromptCache.for_rows``; see
    ``response_states``); the LM head, softmax and entropy then run ``chunk`` response tokens at
    a time (``agpo.ops.chunked_logprobs_entropy``), so memory does not grow with rows × tokens ×
    vocabulary.
    """
    width = rows.response_ids.shape[1]
    # The forward skips all-padding columns (results padded back); a given cache fixes the prompt's.
    rows = trim_padding(rows, prompt=prompts is None)
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
    logprobs = _pad_right(logprobs * mask, width, 0.0)
    entropy = _pad_right(entropy * mask, width, 0.0) if entropy is not None else None
    return logprobs, entropy


def scoring_net(model: torch.nn.Module) -> torch.nn.Module:
    """The module ``response_logprobs`` runs the rows through: the decoder when the head is
    known (``split_head``), else the whole model. A ``PromptCache`` for it is built with it."""
    split = split_head(model)
    return split[0] if split is not None else model


def micro_batches(
    index: torch.Tensor,
    rollout: Rollout,
    max_rows: int,
    max_tokens: int = 0,
) -> list[torch.Tensor]:
    """Consecutive runs of ``index`` [n] (rollout rows, in the order given), one per forward.

    Each run holds at most ``max_rows`` rows and, with ``max_tokens`` > 0, at most that many
    tokens once padded to its longest prompt plus its longest response (what trim_padding
    leaves), so memory follows tokens rather than rows when lengths are long-tailed. A row over
    ``max_tokens`` on its own gets a forward of its own. How rows are grouped never changes a
    loss normalised by global counts; only float rounding.
    """
    if not max_tokens:
        return list(index.split(max_rows))
    prompt = rollout.prompt_mask[index].sum(-1).tolist()
    response = rollout.response_mask[index].sum(-1).tolist()
    cuts, start, wide_p, wide_r = [], 0, 0, 0
    for i, (p, r) in enumerate(zip(prompt, response, strict=True)):
        wide_p, wide_r = max(wide_p, p), max(wide_r, r)
        if i > start and (i - start == max_rows or (i - start + 1) * (wide_p + wide_r) > max_tokens):
            cuts.append(i)
            start, wide_p, wide_r = i, p, r
    return list(index.tensor_split(cuts))


def token_logprobs(
    model: torch.nn.Module,
    rollout: Rollout,
    temperatures: torch.Tensor,
    micro_batch: int,
    max_tokens: int = 0,
    share_prompts: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and token entropy of a rollout's response tokens, [N, T] each, no gradient.

    Evaluated on logits / τ_row with temperatures [N] (pass ``rollout.temperatures`` for the
    sampling distribution, or ones for the reference code's temperature-1 reading). Runs at most
    ``micro_batch`` rows (and, with ``max_tokens``, that many padded tokens) per forward, each
    prompt once per forward (``share_prompts``); masked positions hold 0.
    """
    was_training = model.training
    model.eval()
    index = torch.arange(rollout.num_sequences, device=rollout.response_ids.device)
    lps, ents = [], []
    with torch.inference_mode():  # see sample(); the results are copied out of it below
        for rows in micro_batches(index, rollout, micro_batch, max_tokens):
            lp, ent = response_logprobs(model, select(rollout, rows), temperatures[rows],
                                        share_prompts=share_prompts)
            lps.append(lp)
            ents.append(ent)
    model.train(was_training)
    return torch.cat(lps), torch.cat(ents)  # cat outside inference_mode: ordinary tensors


def select(rollout: Rollout, index: slice | torch.Tensor | list[int]) -> Rollout:
    """Rows of a rollout (a slice, index tensor or list), texts included."""
    if isinstance(index, slice):
        texts = rollout.texts[index]
    else:
        idx = index.tolist() if isinstance(index, torch.Tensor) else list(index)
        texts = [rollout.texts[i] for i in idx]
        index = torch.as_tensor(idx, dtype=torch.long, device=rollout.response_ids.device)
    return Rollout(
        prompt_ids=rollout.prompt_ids[index],
        prompt_mask=rollout.prompt_mask[index],
        response_ids=rollout.response_ids[index],
        response_mask=rollout.response_mask[index],
        logprobs=rollout.logprobs[index],
        temperatures=rollout.temperatures[index],
        truncated=rollout.truncated[index],
        texts=texts,
    )
