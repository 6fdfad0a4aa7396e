"""agpo's own sampler: batched, KV-cached decoding on any transformers causal LM (CPU or GPU),
the ``transformers`` rollout engine (agpo.rollout.engines).

How temperature enters: every row n has its own temperature τ_n. Sampling draws from
softmax(logits / τ_n) (optionally restricted to the top-p nucleus), and the log-probs stored in
the Rollout are log softmax(logits / τ_n) of the drawn token over the FULL vocabulary.
``agpo.policy.token_logprobs`` recomputes exactly that quantity, so with top_p = 1 the
importance ratio π_θ / π_old compares the distribution that produced the samples. With top_p < 1
the sampler is truncated and the stored value is not the true sampling probability; training
rejects that unless explicitly allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F

from agpo.ops import TEMPERATURE_RANGE, check_temperatures  # noqa: F401 — TEMPERATURE_RANGE: re-exported
from agpo.policy.prompt_cache import CACHE, distinct_prompts, selectable
from agpo.types import Rollout

if TYPE_CHECKING:
    from agpo.rollout.config import SamplingConfig

class SamplingProgress(NamedTuple):
    """How far one ``sample`` call got: rows finished of all its rows, and the decode position
    (token of at most max_tokens) of the decode batch running now."""

    rows_done: int
    rows: int
    token: int
    max_tokens: int


# The receiver of SamplingProgress, set by whoever shows progress (the training loop's bar): the
# sampler sits below the engines, which do not carry a callback through their interface.
_REPORT: ContextVar[Callable[[SamplingProgress], None] | None] = ContextVar("agpo_sampling_progress",
                                                                            default=None)


@contextmanager
def sampling_progress(report: Callable[[SamplingProgress], None]) -> Iterator[None]:
    """Inside, every ``sample`` call passes ``report`` its progress after each decoded token.
    It only reads counters the sampler already has on the host: no sample changes."""
    token = _REPORT.set(report)
    try:
        yield
    finally:
        _REPORT.reset(token)


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
    check_temperatures(temperatures)
    temperatures = temperatures.detach().float().reshape(-1).cpu()
    if len(prompts) != temperatures.numel():
        raise ValueError(f"{len(prompts)} prompts but {temperatures.numel()} temperatures")
    was_training = model.training
    model.eval()
    # inference_mode, not no_grad: no version counters or views to track, ≈ 8% less time per
    # decoded token on a tiny model, where Python overhead is most of a forward.
    report = _REPORT.get()
    with torch.inference_mode():
        parts = [
            _sample_batch(model, tokenizer, list(prompts[i : i + cfg.batch_size]),
                          temperatures[i : i + cfg.batch_size], cfg, generator,
                          None if report is None else _offset(report, i, len(prompts), cfg.max_new_tokens))
            for i in range(0, len(prompts), cfg.batch_size)
        ]
    model.train(was_training)
    rollout = Rollout.concat(parts, tokenizer.pad_token_id)
    # Inference tensors may not enter autograd, and the update's loss uses the masks and
    # log-probs: hand back ordinary copies (small: [N, T] at most).
    return rollout.map_tensors(lambda _, x: x.clone() if x.is_inference() else x)


def _offset(report: Callable[[SamplingProgress], None], before: int, rows: int,
            max_tokens: int) -> Callable[[int, int], None]:
    """A decode batch's reporter: (rows finished in it, tokens decoded) → the call's progress."""
    return lambda done, t: report(SamplingProgress(before + done, rows, t, max_tokens))


def _sample_batch(
    model: torch.nn.Module,
    tokenizer,  # noqa: ANN001
    prompts: list[str],
    temperatures: torch.Tensor,
    cfg: SamplingConfig,
    generator: torch.Generator | None,
    report: Callable[[int, int], None] | None = None,
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
    compactable = selectable(cache)
    rows = torch.arange(n, device=device)  # the prompt row of each row still in the decode batch
    done = torch.zeros(n, dtype=torch.bool, device=device)  # [m]: finished, still in the batch
    left = 0  # finished rows that already left the decode batch
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
        if report is not None:
            report(left + finished, t + 1)
        if finished == done.numel():
            width = t + 1
            break
        # Finished rows leave the decode batch once they are half of it: re-indexing the cache is
        # a copy, paid back by every later forward running on the smaller batch.
        if compactable and 2 * finished >= done.numel():
            keep = (~done).nonzero().squeeze(-1)
            left += finished
            cache.batch_select_indices(keep)
            rows, attn, pos, tok, done = rows[keep], attn[keep], pos[keep], tok[keep], done[keep]
            inv_tau = None if inv_tau is None else inv_tau[keep]
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=-1)
        pos = pos[:, -1:] + 1
        next_logits = model(input_ids=tok.masked_fill(done, pad).unsqueeze(-1), attention_mask=attn,
                            position_ids=pos, use_cache=True, **{CACHE: cache}).logits[:, -1]

    if report is not None:  # rows cut at the token cap are finished too
        report(n, width)
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
    distinct = distinct_prompts(prompt_ids, prompt_mask)
    src = slice(None) if distinct is None else distinct[0]
    out = model(input_ids=prompt_ids[src], attention_mask=prompt_mask[src], position_ids=pos[src],
                use_cache=True, logits_to_keep=1)
    cache = getattr(out, CACHE)
    if distinct is None:
        return out.logits[:, -1], cache
    if not selectable(cache):  # a cache that cannot be indexed: every row runs its prompt
        out = model(input_ids=prompt_ids, attention_mask=prompt_mask, position_ids=pos, use_cache=True,
                    logits_to_keep=1)
        return out.logits[:, -1], getattr(out, CACHE)
    cache.batch_select_indices(distinct[1])
    return out.logits[distinct[1], -1], cache


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
