"""Evaluation overhead: ``evaluate_items`` (sample → verify → append rows → summarise) against
raw sampling of the same batches (same prompts, same seeded generators, so the same tokens).

Targets (DESIGN.md): eval wall time within 10% of raw sampling; verification ≤ 5% of the eval.
The verification share counts only the time the eval waits for verdicts: a batch is verified on
the reward function's helper thread while the next one samples. ``verify_work_s`` is the serial
cost of the same verification (timed apart, after the raw sampling), for comparison.

    .venv/bin/python benchmarks/bench_eval.py                      # testbed base model, n=1024
    .venv/bin/python benchmarks/bench_eval.py --model DIR --task FILE --verifier math

Without --model the testbed base model is used (built and cached on first use, ~2 minutes).
Each side runs ``--repeats`` times, interleaved; the fastest of each is compared (the machine is
shared, the minimum is the least disturbed measurement).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import tyro

from agpo.eval.runner import Timing, batch_generator, batches, evaluate_items
from agpo.rewards import RewardConfig, build_reward
from agpo.rollout import SamplingConfig, sample
from agpo.tasks import load_task, render_prompt


@dataclass(frozen=True)
class Args:
    model: str | None = None
    """from_pretrained folder; default: the testbed base model (seed 0)."""
    task: str = "testbed_add"
    """Task name or file."""
    limit: int = 16
    """Problems evaluated."""
    n: int = 1024
    """Samples per problem."""
    batch_size: int = 512
    """Sequences decoded together."""
    max_new_tokens: int = 16
    temperature: float = 1.0
    top_p: float = 1.0
    verifier: str = "auto"
    """auto: the task's own verifier (meta 'verifier'), else math."""
    workers: int = 1
    """Verification worker processes (math)."""
    repeats: int = 4
    threads: int = 1
    """torch threads (1: comparable across machines and polite on shared ones)."""


def raw_sampling(model, tok, items, prompts, n, sampling, reward,  # noqa: ANN001
                 seed=0) -> tuple[float, int, float]:
    """Seconds and generated tokens of sampling the eval's batches, nothing else; and the
    seconds ``reward.batch`` takes on them serially (excluded from the first figure)."""
    sample_s, verify_s, tokens = 0.0, 0.0, 0
    for b, units in batches(len(prompts), n, sampling.batch_size):
        temps = torch.full((len(units),), sampling.temperature)
        t0 = time.perf_counter()
        rollout = sample(model, tok, [prompts[u // n] for u in units], temps, sampling,
                         batch_generator(seed, b))
        t1 = time.perf_counter()
        reward.batch([items[u // n] for u in units], rollout.texts)
        sample_s += t1 - t0
        verify_s += time.perf_counter() - t1
        tokens += rollout.num_generated_tokens
    return sample_s, tokens, verify_s


def main() -> None:
    args = tyro.cli(Args)
    torch.set_num_threads(args.threads)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.model is None:
        from agpo.models.testbed import build_base_model

        model_dir = build_base_model(0)
    else:
        model_dir = Path(args.model)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tok = AutoTokenizer.from_pretrained(model_dir)
    items = load_task(args.task, limit=args.limit)
    verifier = args.verifier if args.verifier != "auto" else str(
        items[0].meta.get("verifier", "math"))
    sampling = SamplingConfig(max_new_tokens=args.max_new_tokens, top_p=args.top_p,
                              temperature=args.temperature, batch_size=args.batch_size)
    prompts = [render_prompt(it, "plain", tok) for it in items]

    raw_s, eval_s, verify_s, work_s, tokens = [], [], [], [], 0
    with build_reward(RewardConfig(verifier=verifier, workers=args.workers)) as reward:
        for rep in range(args.repeats):
            # Alternate which side goes first so warm-up and neighbours' load hit both alike.
            for side in (("raw", "eval") if rep % 2 == 0 else ("eval", "raw")):
                if side == "raw":
                    seconds, tokens, work = raw_sampling(model, tok, items, prompts, args.n,
                                                         sampling, reward)
                    raw_s.append(seconds)
                    work_s.append(work)
                    continue
                timing = Timing()
                with tempfile.TemporaryDirectory() as out:
                    start = time.perf_counter()
                    metrics = evaluate_items(model, tok, items, args.n, sampling, reward,
                                             Path(out), progress=False, timing=timing)
                    eval_s.append(time.perf_counter() - start)
                verify_s.append(timing.verify_s)
            assert timing.tokens == tokens, "eval and raw sampling must draw the same tokens"

    best = min(range(args.repeats), key=lambda i: eval_s[i])
    result = {
        "model": str(model_dir), "task": args.task, "problems": len(items), "n": args.n,
        "samples": len(items) * args.n, "tokens": tokens, "verifier": verifier,
        "raw_sampling_s": round(min(raw_s), 3), "eval_s": round(eval_s[best], 3),
        "eval_over_raw": round(eval_s[best] / min(raw_s), 4),
        "verify_wait_s": round(verify_s[best], 4),
        "verify_share": round(verify_s[best] / eval_s[best], 4),
        "verify_work_s": round(min(work_s), 4),
        "verify_work_share": round(min(work_s) / eval_s[best], 4),
        "pass@1": round(metrics["pass@1"], 4),
        f"pass@{args.n}": round(metrics[f"pass@{args.n}"], 4),
        "all_raw_s": [round(x, 3) for x in raw_s], "all_eval_s": [round(x, 3) for x in eval_s],
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))
    print(f"eval / raw sampling = {result['eval_over_raw']:.3f} (target ≤ 1.10); "
          f"verification share = {result['verify_share']:.3%} (target ≤ 5%; the eval's wait "
          f"for verdicts; serial verification work = {result['verify_work_share']:.3%})")


if __name__ == "__main__":
    main()
