"""One update with each group's prompt run once (``--train.share-prompts``, the default) against
the same update with every row running its whole prompt, on the same rollout, alternating in one
invocation; and how far apart the two updates' weights land.

The rollout is the workload of bench_train_vs_trl.py (``--model smollm2-135m-instruct``: 8
chat-template word problems × 8 samples, ≤ 128 new tokens; or its tiny model), sampled once
with agpo's sampler; the update is agpo's (``agpo.train.update.update``: PPO-clip, token-mean,
the workload's rows per micro-batch, one optimizer step, SGD so that the weight difference is
the gradient difference times the LR).

    .venv/bin/python benchmarks/bench_update_prompts.py --model smollm2-135m-instruct --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_train_vs_trl import G, TINY, WORKLOADS, build  # noqa: E402

from agpo.rollout import SamplingConfig, sample  # noqa: E402
from agpo.train.update import TrainBatch, UpdateSpec, update  # noqa: E402

LR = 1e-3


def _update(model: torch.nn.Module, batch: TrainBatch, spec: UpdateSpec) -> tuple[float, dict[str, torch.Tensor]]:
    model = copy.deepcopy(model)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    start = time.perf_counter()
    update(model, opt, dataclasses.replace(batch, old_logprobs=None), spec)
    return time.perf_counter() - start, {k: v.detach() for k, v in model.state_dict().items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=TINY, choices=sorted(WORKLOADS))
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    wl = WORKLOADS[args.model]
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp:
        model_dir, task = build(Path(tmp), args.prompts, wl)
        tok = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        texts = [json.loads(x)["prompt"] for x in task.read_text().splitlines()][: args.prompts]
    n = len(texts) * G
    cfg = SamplingConfig(max_new_tokens=wl.new_tokens, batch_size=n)
    rollout = sample(model, tok, [p for p in texts for _ in range(G)], torch.ones(n), cfg,
                     torch.Generator().manual_seed(0))
    scores = torch.randn(n, generator=torch.Generator().manual_seed(1))  # any advantages: timing
    batch = TrainBatch(rollout=rollout, temperatures=rollout.temperatures, old_logprobs=None,
                       ref_logprobs=None, advantages=scores, loss_mask=rollout.response_mask,
                       clip_low=torch.full((n,), 0.2), clip_high=torch.full((n,), 0.2))
    spec = UpdateSpec(objective="ppo_clip", aggregation="token_mean", kl_estimator="k3", kl_coef=0.0,
                      entropy_coef=0.0, max_len=wl.new_tokens, epochs=1, mini_batches=1,
                      micro_batch_size=wl.micro, group_size=G, grad_clip=0.0)
    prompt_len = rollout.prompt_mask.sum(-1).float().mean().item()
    response_len = rollout.response_mask.sum(-1).float().mean().item()
    print(f"{wl.model}: {n} rows ({len(texts)} prompts × {G}), prompt {prompt_len:.1f} tokens, "
          f"response {response_len:.1f} tokens (mean), {wl.micro} rows per micro-batch, "
          f"threads {torch.get_num_threads()}")
    times: dict[bool, list[float]] = {True: [], False: []}
    weights: dict[bool, dict[str, torch.Tensor]] = {}
    for rep in range(args.repeats):
        for share in ((True, False) if rep % 2 == 0 else (False, True)):  # alternate the order
            seconds, weights[share] = _update(model, batch, dataclasses.replace(spec, share_prompts=share))
            times[share].append(seconds)
            print(f"# repeat {rep} share_prompts={share}: {seconds:.2f} s", flush=True)
    step = {k: weights[False][k] - v for k, v in model.state_dict().items()}  # the update itself
    gap = max(float((weights[True][k] - weights[False][k]).abs().max()) for k in step)
    size = max(float(v.abs().max()) for v in step.values())
    shared, whole = statistics.median(times[True]), statistics.median(times[False])
    result = {"model": wl.model, "rows": n, "prompt_tokens_mean": prompt_len,
              "response_tokens_mean": response_len, "shared_s": shared, "whole_s": whole,
              "speedup": whole / shared, "max_weight_gap": gap, "max_weight_step": size}
    print(f"update: shared prompts {shared:.2f} s, whole rows {whole:.2f} s → {whole / shared:.2f}×; "
          f"weights differ by ≤ {gap:.2e} (the update moved them by ≤ {size:.2e})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
