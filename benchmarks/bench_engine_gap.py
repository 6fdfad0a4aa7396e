"""Engine/trainer mismatch, measured: vLLM's sampling log-probs against the trainer's log-probs of
the same tokens on SmolLM2-135M-Instruct, in fp32 and in bf16.

- fp32: vLLM in float32; the trainer's forward in float32 (agpo's default).
- bf16: vLLM in bfloat16 (its weights cast from the trainer's float32 ones); the trainer in
  bf16-mixed (float32 weights, forward under bfloat16 autocast, log-probs in float32), the pair
  a bf16 run on a GPU uses.

Per precision: Δ = log π_trainer − log π_vLLM on every sampled token, summarised with
``agpo.algos.mismatch.correct`` (the same statistics training logs): mean and max |Δ|, the
sequence ratio exp(mean Δ) (geometric) and exp(Σ Δ) (product), and the shares a correction
would act on: tokens whose ratio exceeds a TIS cap of 2, sequences whose product ratio leaves
[1/2, 2] (verl's sequence-level rejection default). "vLLM s" is the sampling call, the
engine's start-up included.

Runs in .venv-vllm (scripts/vllm_env.sh). bf16 on a CPU without bfloat16 instructions is slow
(emulated): keep the workload small.

    .venv-vllm/bin/python benchmarks/bench_engine_gap.py [--prompts 4] [--samples 4] [--max-new-tokens 64]
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import time

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from agpo.algos.mismatch import MismatchConfig, correct, sequence_log_ratio  # noqa: E402
from agpo.models import load  # noqa: E402
from agpo.models.precision import Precision, autocast  # noqa: E402
from agpo.policy import token_logprobs  # noqa: E402
from agpo.rollout import SamplingConfig  # noqa: E402
from agpo.rollout.vllm import VLLMEngine  # noqa: E402
from agpo.tasks.templates import render_prompt  # noqa: E402
from agpo.types import TaskItem  # noqa: E402

QUESTIONS = [
    "What is 17 + 25? Answer with a number.",
    "Tom has 12 apples and eats 5. How many are left?",
    "Name three colours of a rainbow.",
    "Write one sentence about the sea.",
    "What is 9 times 7?",
    "Count from 1 to 10.",
    "Which is larger, 0.5 or 0.45? Explain briefly.",
    "Give a synonym for 'happy'.",
]

CAP = 2.0  # TIS cap and the sequence band [1/CAP, CAP] the shares are read against


def measure(model: torch.nn.Module, tok: object, prompts: list[str], samples: int, max_new: int,
            precision: Precision) -> dict[str, float]:
    """Sample ``samples`` responses per prompt with vLLM in ``precision``'s compute dtype and
    compare its log-probs with the trainer's under the same precision policy."""
    cfg = SamplingConfig(max_new_tokens=max_new, engine="vllm", vllm_kv_cache_gb=1)
    engine = VLLMEngine(model, tok, cfg, dtype=precision.compute_dtype)
    rows = [p for p in prompts for _ in range(samples)]
    try:
        t0 = time.perf_counter()
        r = engine.sample(rows, torch.ones(len(rows)), cfg, torch.Generator().manual_seed(0))
        t_sample = time.perf_counter() - t0
    finally:
        engine.close()
        gc.collect()
    t0 = time.perf_counter()
    with autocast(precision, "cpu"):
        trainer, _ = token_logprobs(model, r, r.temperatures, micro_batch=8)
    t_score = time.perf_counter() - t0
    mask = r.response_mask
    stats = {k.removeprefix("mismatch/"): float(v)
             for k, v in correct(trainer, r.logprobs, mask, MismatchConfig(token_cap=CAP)).stats.items()}
    delta = torch.where(mask.bool(), trainer.float() - r.logprobs.float(), 0.0)
    product = sequence_log_ratio(delta, mask.float(), "product")  # [N]
    band = math.log(CAP)
    return {
        "tokens": stats["tokens"], "sequences": stats["sequences"],
        "gap_mean": stats["token_gap_mean"], "gap_max": stats["token_gap_max"],
        "geo_min": stats["seq_ratio_min"], "geo_max": stats["seq_ratio_max"],
        "prod_min": math.exp(float(product.min())), "prod_max": math.exp(float(product.max())),
        "tis_frac": stats["token_truncated_frac"],
        "seq_out_frac": float((product.abs() > band).float().mean()),
        "sample_s": t_sample, "score_s": t_score,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16-mixed"], choices=["fp32", "bf16-mixed"])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load("smollm2-135m-instruct")
    model.eval()
    prompts = [render_prompt(TaskItem(str(i), q, ""), "chat", tok)
               for i, q in enumerate((QUESTIONS * 8)[: args.prompts])]
    print(f"SmolLM2-135M-Instruct, {args.prompts} chat prompts × {args.samples} samples, τ = 1, "
          f"≤ {args.max_new_tokens} new tokens; torch {torch.__version__}, {args.threads} threads")
    print("precision: vLLM dtype / trainer forward; Δ = log π_trainer − log π_vLLM per token; "
          "geo = exp(mean Δ), prod = exp(Σ Δ) per sequence")
    head = (f"{'precision':>10} {'tokens':>6} {'mean |Δ|':>9} {'max |Δ|':>9} {'geo min':>8} {'geo max':>8} "
            f"{'prod min':>8} {'prod max':>8} {f'tok >{CAP:g}':>7} {'seq out':>7} {'vLLM s':>7}")
    print(head)
    for name in args.precisions:
        p = Precision(name)  # type: ignore[arg-type]
        m = measure(model, tok, prompts, args.samples, args.max_new_tokens, p)
        label = "fp32" if name == "fp32" else "bf16"
        print(f"{label:>10} {m['tokens']:6.0f} {m['gap_mean']:9.2e} {m['gap_max']:9.2e} {m['geo_min']:8.4f} "
              f"{m['geo_max']:8.4f} {m['prod_min']:8.4f} {m['prod_max']:8.4f} {m['tis_frac']:7.2%} "
              f"{m['seq_out_frac']:7.2%} {m['sample_s']:7.1f}", flush=True)


if __name__ == "__main__":
    main()
