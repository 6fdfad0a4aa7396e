"""vLLM as the rollout engine, colocated with the trainer in one process.

Imported only when ``--rollout.engine vllm`` (or ``agpo eval --engine vllm``) is chosen: agpo
runs without vLLM installed. What this engine guarantees, and what it does not:

- Weights: the engine starts from the policy's config with dummy weights and copies the policy's
  state dict in (``reload_weights``), then again whenever a parameter's version counter moved
  (every optimizer step and ``load_state_dict`` bump them), right before the next sampling; the
  prefix cache is reset with every push, since its KV entries belong to the old weights. Pushing
  before the next sampling is the same as pushing after every optimizer step: nothing samples in
  between. 135M parameters take ≈ 0.6 s on 2 CPU cores.
- Requests: consecutive rows with the same prompt and temperature (a group) become one request
  with ``n`` samples, so the prompt is prefilled once per group; each request carries its own
  temperature (AGPO-adaptive's per-prompt τ, the probe group's τ_base). Prompts are tokenized by
  agpo's tokenizer and responses decoded by it, exactly as the transformers engine does.
- Log-probs: vLLM's ``processed_logprobs`` of the sampled token, i.e. log softmax(logits / τ) over
  the full vocabulary (top-p restricts the draw, not this value), the quantity the transformers
  engine stores. They come from vLLM's kernels, so they differ from the trainer's by rounding
  (≈ 1e-5 in fp32 here, more in bf16): ``exact_logprobs`` is False; π_old is the trainer's
  (see train/sampling.py) and the gap is logged as rollout/engine_logprob_gap.
- Randomness: per-request seeds crash vLLM's CPU build, and its sampler draws its noise from
  torch's global generator on the device it runs on. Each call therefore draws one seed from the
  caller's generator (which agpo checkpoints) and seeds the global generator with it inside a
  forked RNG state, so the trainer's global stream is untouched. With the in-process engine and
  the same weights and requests, a call is then reproducible (tests/rollout/test_vllm.py checks
  it on CPU); vLLM does not promise this in general (batch composition and kernels may change
  the rounding), so across versions and devices only the distribution is the same.
"""

from __future__ import annotations

import gc
import os
import tempfile
from collections.abc import Sequence
from typing import Any

import torch

from agpo.errors import UserError
from agpo.rollout.config import SamplingConfig
from agpo.rollout.engine import eos_ids, prepare_tokenizer
from agpo.types import Rollout

VLLM_MAX_TEMPERATURE = 2.0  # SamplingParams refuses more


class VLLMEngine:
    """A vLLM ``LLM`` in this process holding a copy of ``model``'s weights.

    The engine is created on the first ``sample`` (so a run restored from a checkpoint pushes the
    restored weights, and a run that never samples never pays vLLM's start-up of a few seconds).
    """

    exact_logprobs = False

    def __init__(self, model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> None:
        if getattr(model, "peft_config", None):
            raise UserError("--rollout.engine vllm does not push LoRA adapters yet: use "
                            "--rollout.engine transformers with --model.lora-rank > 0")
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.llm: Any = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._version: tuple[int, ...] | None = None
        self.pushes = 0  # weight pushes so far (the tests read it)

    # --- weights ---------------------------------------------------------------------------

    def policy_version(self) -> tuple[int, ...]:
        """The version counters of the policy's parameters: any in-place change of a weight
        (optimizer step, load_state_dict, copy_) bumps one. A few hundred ints: free."""
        return tuple(p._version for p in self.model.parameters())

    def sync(self) -> bool:
        """Start the engine or push the policy's weights if they changed; True if it pushed."""
        version = self.policy_version()
        if self.llm is None:
            self._start()
        elif version == self._version:
            return False
        weights = ((k, v.detach()) for k, v in self.model.state_dict().items())
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
        self._version = version
        self.pushes += 1
        return True

    def _start(self) -> None:
        # In-process engine: the weight push hands tensors over without serialisation, and the
        # sampler's noise comes from this process's torch generator (see the module docstring).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.cfg.vllm_kv_cache_gb)
        from vllm import LLM

        device = next(self.model.parameters()).device
        dtype = next(self.model.parameters()).dtype
        config = self.model.config
        self._dir = tempfile.TemporaryDirectory(prefix="agpo-vllm-")
        config.save_pretrained(self._dir.name)  # config.json only: the weights come from memory
        max_len = int(getattr(config, "max_position_embeddings", 0) or 4096)
        kwargs: dict[str, Any] = {}
        if device.type == "cuda":
            kwargs["gpu_memory_utilization"] = self.cfg.vllm_gpu_memory
        # vLLM seeds torch's global generators when it starts; the trainer's must not move.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            self.llm = LLM(
                model=self._dir.name, load_format="dummy", skip_tokenizer_init=True,
                dtype=dtype, enforce_eager=self.cfg.vllm_enforce_eager or device.type == "cpu",
                enable_prefix_caching=True, logprobs_mode="processed_logprobs",
                generation_config="vllm", max_model_len=min(max_len, 8192), seed=0, **kwargs,
            )

    def close(self) -> None:
        # vLLM's parallel state is global to the process: one engine may be alive at a time,
        # and closing it frees that state for the next.
        self.llm = None
        gc.collect()  # the LLM's reference cycles hold its KV cache
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    # --- sampling --------------------------------------------------------------------------

    def sample(self, prompts: Sequence[str], temperatures: torch.Tensor, cfg: SamplingConfig,
               generator: torch.Generator | None = None) -> Rollout:
        """One response per prompt string (prompts repeated G times, grouped), temperatures [N];
        the Rollout of rollout.engine.sample (prompt_ids/prompt_mask [N, P], response_ids,
        response_mask, logprobs [N, T], truncated [N], texts)."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        temperatures = temperatures.detach().float().reshape(-1).cpu()
        if len(prompts) != temperatures.numel():
            raise ValueError(f"{len(prompts)} prompts but {temperatures.numel()} temperatures")
        if float(temperatures.max()) > VLLM_MAX_TEMPERATURE:
            raise UserError(
                f"--rollout.engine vllm samples at temperatures ≤ {VLLM_MAX_TEMPERATURE} (vLLM's "
                f"limit); asked for {float(temperatures.max()):g}: lower the temperature "
                "(--rollout.temperature, --algo.adaptive.tau-max, --eval.temperature) or use "
                "--rollout.engine transformers")
        prepare_tokenizer(self.tokenizer)
        stop = eos_ids(self.model, self.tokenizer)
        taus = temperatures.tolist()
        requests, params = [], []
        for start, count in _runs(prompts, taus):
            ids = self.tokenizer(prompts[start])["input_ids"]
            requests.append(TokensPrompt(prompt_token_ids=ids))
            params.append(SamplingParams(
                n=count, temperature=taus[start], top_p=cfg.top_p, max_tokens=cfg.max_new_tokens,
                logprobs=0, stop_token_ids=stop, detokenize=False,
            ))
        device = next(self.model.parameters()).device
        seed = int(torch.randint(0, 2**62, (1,), generator=generator,
                                 device=generator.device if generator is not None else "cpu"))
        first = self.llm is None
        try:
            self.sync()
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                outputs = self.llm.generate(requests, params, use_tqdm=False)
        except Exception as e:
            if not first:
                raise
            # vLLM refuses models it has no kernels for (e.g. head size 16 on CPU), at start-up
            # or at its first forward.
            self.close()
            reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise UserError(f"--rollout.engine vllm: vLLM cannot run this model ({reason[:300]}); "
                            "use --rollout.engine transformers") from None
        prompt_rows, responses, logprobs, finished = [], [], [], []
        for request, out in zip(requests, outputs, strict=True):
            for completion in out.outputs:
                prompt_rows.append(request["prompt_token_ids"])
                responses.append(list(completion.token_ids))
                # logprobs=0: one {token: Logprob} per position, the sampled token's
                logprobs.append([step[tok].logprob for tok, step in zip(completion.token_ids,
                                                                        completion.logprobs, strict=True)])
                finished.append(completion.finish_reason == "stop")
        return _rollout(prompt_rows, responses, logprobs, finished, temperatures,
                        self.tokenizer, device)


def _runs(prompts: Sequence[str], taus: list[float]) -> list[tuple[int, int]]:
    """(start, length) of each run of equal consecutive (prompt, τ) rows: one request each."""
    runs: list[tuple[int, int]] = []
    for i in range(len(prompts)):
        if runs and prompts[i] == prompts[i - 1] and taus[i] == taus[i - 1]:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((i, 1))
    return runs


def _rollout(
    prompt_rows: list[list[int]], responses: list[list[int]], logprobs: list[list[float]],
    finished: list[bool], temperatures: torch.Tensor, tokenizer: Any, device: torch.device,
) -> Rollout:
    """Pad token lists into a Rollout: prompts on the left [N, P], responses on the right [N, T]."""
    pad = tokenizer.pad_token_id
    n = len(responses)
    p = max(len(r) for r in prompt_rows)
    t = max(max(len(r) for r in responses), 1)
    prompt_ids = torch.full((n, p), pad, dtype=torch.long)
    prompt_mask = torch.zeros(n, p, dtype=torch.long)
    response_ids = torch.full((n, t), pad, dtype=torch.long)
    response_mask = torch.zeros(n, t, dtype=torch.long)
    lp = torch.zeros(n, t)
    for i, (q, r, l) in enumerate(zip(prompt_rows, responses, logprobs, strict=True)):
        prompt_ids[i, p - len(q):] = torch.tensor(q)
        prompt_mask[i, p - len(q):] = 1
        response_ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
        response_mask[i, : len(r)] = 1
        lp[i, : len(l)] = torch.tensor(l)
    texts = tokenizer.batch_decode(responses, skip_special_tokens=True)
    return Rollout(
        prompt_ids=prompt_ids.to(device), prompt_mask=prompt_mask.to(device),
        response_ids=response_ids.to(device), response_mask=response_mask.to(device),
        logprobs=lp.to(device), temperatures=temperatures.to(device),
        truncated=~torch.tensor(finished, dtype=torch.bool, device=device), texts=texts,
    )
