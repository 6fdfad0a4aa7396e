"""agpo.policy — the policy's forward over sampled rows (the floor between models and
rollout / train): log-probs and token entropy of response tokens, each repeated prompt run once,
micro-batching.

forward        response_logprobs: the one forward (the update's loss and every scoring pass)
prompt_cache   PromptCache: a group's prompt runs once, its KV cache indexed out to its rows
batches        token_logprobs (no gradient, a whole rollout), MiniBatch (one optimizer step's
               rows, with gradient), micro_batches

Sampling lives in agpo.rollout (it reuses the KV-cache helpers of prompt_cache); the loss in
agpo.algos; the update that calls MiniBatch in agpo.train.update.
"""

from agpo.policy.batches import MiniBatch, micro_batches, token_logprobs
from agpo.policy.forward import LOGIT_CHUNK, response_logprobs, scoring_net, split_head
from agpo.policy.prompt_cache import PromptCache

__all__ = ["LOGIT_CHUNK", "MiniBatch", "PromptCache", "micro_batches", "response_logprobs", "scoring_net",
           "split_head", "token_logprobs"]
