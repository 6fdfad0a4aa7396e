"""Rows through the policy in micro-batches: ``token_logprobs`` scores a whole rollout without
gradient (π_old, π_ref, the post-update diagnostics), ``MiniBatch`` runs one optimizer step's
rows for the update's loss. Both call ``response_logprobs``, the one forward.

How rows are grouped into micro-batches never changes a loss normalised by global counts, nor a
score; only float rounding.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from agpo.policy.forward import response_logprobs, scoring_net
from agpo.policy.prompt_cache import PromptCache
from agpo.types import Rollout


def micro_batches(
    index: torch.Tensor,
    rollout: Rollout,
    max_rows: int,
    max_tokens: int = 0,
) -> list[torch.Tensor]:
    """Consecutive runs of ``index`` [n] (rollout rows, in the order given), one per forward.

    Each run holds at most ``max_rows`` rows and, with ``max_tokens`` > 0, at most that many
    tokens once padded to its longest prompt plus its longest response (what ``Rollout.trim``
    leaves), so memory follows tokens rather than rows when lengths are long-tailed. A row over
    ``max_tokens`` on its own gets a forward of its own.
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
    # inference_mode, not no_grad: no version counters or views to track; the results are
    # copied out of it below.
    with torch.inference_mode():
        for rows in micro_batches(index, rollout, micro_batch, max_tokens):
            lp, ent = response_logprobs(model, rollout.select(rows), temperatures[rows],
                                        share_prompts=share_prompts)
            lps.append(lp)
            ents.append(ent)
    model.train(was_training)
    return torch.cat(lps), torch.cat(ents)  # cat outside inference_mode: ordinary tensors


class MiniBatch:
    """The rows of one optimizer step through the policy, with gradient, one micro-batch at a
    time: iterate it for the micro-batches (index tensors into the rollout), call ``forward`` on
    each and backpropagate its loss, then ``backward()`` once before the optimizer step.

    With ``share_prompts`` the mini-batch's distinct prompts run once for all its micro-batches
    (a deferred ``PromptCache``: the micro-batches' backward leaves their gradient on the cache,
    ``backward()`` sends it through the prompts' forward). When micro-batching, rows are ordered
    by response length so that ``Rollout.trim`` can drop the columns past the longest row of each
    (a short row otherwise pays for the batch's longest); only the order in which micro-batch
    gradients are summed changes (float rounding).
    """

    def __init__(self, model: torch.nn.Module, rollout: Rollout, rows: torch.Tensor, max_rows: int,
                 max_tokens: int = 0, share_prompts: bool = True) -> None:
        """rows [n]: the mini-batch's rows of ``rollout``; ``max_rows`` / ``max_tokens``: see
        ``micro_batches``."""
        self.model, self.rollout, self.share_prompts = model, rollout, share_prompts
        self._cache: PromptCache | None = None
        self._slot: torch.Tensor | None = None  # [N] rollout row → its prompt in the cache
        if share_prompts:
            head = rollout.select(rows).trim()  # the mini-batch's prompts without all-padding columns
            self._cache = PromptCache.build(scoring_net(model), head.prompt_ids, head.prompt_mask, deferred=True)
            if self._cache is not None:
                self._slot = torch.full((rollout.num_sequences,), -1, dtype=torch.long, device=rows.device)
                self._slot[rows] = self._cache.inverse
        if max_rows < rows.numel() or max_tokens:
            lengths = rollout.response_mask[rows].sum(-1)  # [n]
            rows = rows[torch.sort(lengths, stable=True).indices]
        self._parts = micro_batches(rows, rollout, max_rows, max_tokens)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter(self._parts)

    def __len__(self) -> int:
        """Micro-batches in this mini-batch."""
        return len(self._parts)

    def forward(self, mb: torch.Tensor, temperatures: torch.Tensor,
                with_entropy: bool) -> tuple[Rollout, torch.Tensor, torch.Tensor | None]:
        """Micro-batch rows ``mb`` [m] with their all-padding columns dropped, [m, P'] / [m, T']
        (the prompt's stay when the cache holds them), and their log-probs and (with
        ``with_entropy``) token entropy, [m, T'] each, differentiable; temperatures [m]."""
        prompts = self._cache.for_rows(self._slot[mb]) if self._cache is not None else None
        rows = self.rollout.select(mb).trim(prompt=prompts is None)
        logprobs, entropy = response_logprobs(self.model, rows, temperatures, with_entropy=with_entropy,
                                              share_prompts=self.share_prompts, prompts=prompts)
        return rows, logprobs, entropy

    def backward(self) -> None:
        """The prompts' share of the gradient, once, after the last micro-batch's backward."""
        if self._cache is not None:
            self._cache.backward()
