"""Peak memory of scoring and of one training forward + backward on a real-size vocabulary:
log-probs and entropy through full-vocabulary logits vs agpo's chunked path, in one invocation.

The workload is SmolLM2-135M's vocabulary (49,152) on a small random Llama (hidden 64, 2
layers), so the logits dominate as they do on the real model: ROWS × TOKENS × 49,152 × 4 B is
the float32 logits tensor the full path holds (64 × 256 → 3.2 GB; default 32 × 256 → 1.6 GB).
Each variant runs in a fresh process; the number is that process's peak RSS growth
(``ru_maxrss``) over its state after building the model and the batch.

    .venv/bin/python benchmarks/bench_logprob_memory.py [--rows 32] [--tokens 256] [--chunk 1024]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

VOCAB = 49_152


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def measure(variant: str, mode: str, rows: int, tokens: int, chunk: int) -> dict[str, float]:
    import torch

    from agpo.policy import forward as engine
    from agpo.models.tiny import tiny_llama
    from agpo.types import Rollout

    torch.manual_seed(0)
    model = tiny_llama(VOCAB, hidden=64, layers=2, heads=4, kv_heads=2, max_positions=2 * tokens)
    prompt, response = tokens // 4, tokens - tokens // 4
    batch = Rollout(
        prompt_ids=torch.randint(0, VOCAB, (rows, prompt)),
        prompt_mask=torch.ones(rows, prompt, dtype=torch.long),
        response_ids=torch.randint(0, VOCAB, (rows, response)),
        response_mask=torch.ones(rows, response, dtype=torch.long),
        logprobs=torch.zeros(rows, response),
        temperatures=torch.full((rows,), 0.7),
        truncated=torch.zeros(rows, dtype=torch.bool),
        texts=[""] * rows,
    )
    if variant == "full":
        engine.split_head = lambda m: None  # the full-vocabulary logits path
    base = _peak_mb()
    start = time.perf_counter()
    if mode == "score":
        with torch.no_grad():
            engine.response_logprobs(model, batch, batch.temperatures, chunk=chunk)
    else:
        lp, ent = engine.response_logprobs(model, batch, batch.temperatures, chunk=chunk)
        (lp.mean() + 0.01 * ent.mean()).backward()
    return {"peak_growth_mb": _peak_mb() - base, "seconds": time.perf_counter() - start}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(measure(*args.one, args.rows, args.tokens, args.chunk)))
        return
    logits_mb = args.rows * (args.tokens - args.tokens // 4) * VOCAB * 4 / 2**20
    print(f"{args.rows} rows × {args.tokens} tokens ({args.tokens - args.tokens // 4} scored), "
          f"vocabulary {VOCAB}: one float32 logits tensor = {logits_mb:.0f} MB; chunk {args.chunk}")
    print(f"{'mode':<15}{'full MB':>10}{'chunked MB':>12}{'ratio':>8}{'full s':>9}{'chunked s':>11}")
    for mode in ("score", "train"):
        res = {}
        for variant in ("full", "chunked"):
            out = subprocess.run(
                [sys.executable, __file__, "--one", variant, mode, "--rows", str(args.rows),
                 "--tokens", str(args.tokens), "--chunk", str(args.chunk),
                 "--threads", str(args.threads)],
                check=True, capture_output=True, text=True)
            res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
        f, c = res["full"], res["chunked"]
        print(f"{mode:<15}{f['peak_growth_mb']:>10.0f}{c['peak_growth_mb']:>12.0f}"
              f"{f['peak_growth_mb'] / max(c['peak_growth_mb'], 1):>8.1f}"
              f"{f['seconds']:>9.1f}{c['seconds']:>11.1f}")


if __name__ == "__main__":
    main()
