#!/usr/bin/env bash
# SmolLM2-135M-Instruct on procedural arithmetic (agpo.tasks.arith): GRPO, AGPO-asymmetric and
# AsymGRPO trained from configs/smollm2_arith.yaml under one generated-token budget, then
# pass@k (k = 1 … N) on the held-out split for the base model and each trained model.
#
#   scripts/smollm2_experiment.sh [OUT]          (default OUT: runs/smollm2_arith)
#   BUDGET=2048 EVAL_PROBLEMS=4 N=64 scripts/smollm2_experiment.sh /tmp/smollm2
#
# Everything goes through the `agpo train` / `agpo eval` commands a user runs; OUT/table.md is
# the result table, OUT/times.txt the wall time of every stage. Sized for 2 CPU cores: each RL
# step is 8 prompts × 8 samples of ≤ 12 tokens.
set -euo pipefail
OUT=${1:-runs/smollm2_arith}
AGPO=${AGPO:-.venv/bin/agpo}
BUDGET=${BUDGET:-2048}
EVAL_PROBLEMS=${EVAL_PROBLEMS:-4}
N=${N:-64}
THREADS=${THREADS:-2}
mkdir -p "$OUT"
export OMP_NUM_THREADS=$THREADS

stamp() { echo "$(date -u +%H:%M:%S) $*" | tee -a "$OUT/times.txt"; }

evaluate() {  # NAME MODEL
  [ -f "$OUT/eval_$1/passk.json" ] && return 0  # done already (a rerun resumes the rest)
  stamp "eval $1 start"
  "$AGPO" eval --model "$2" --task arith --split test --limit "$EVAL_PROBLEMS" --n "$N" \
    --template chat --temperature 0.6 --top-p 0.95 --max-new-tokens 12 --batch-size 64 \
    --workers 1 --device cpu --no-progress --out "$OUT/eval_$1"
  stamp "eval $1 done"
}

train() {  # METHOD FLAGS...
  local method=$1; shift
  if ! ls -d "$OUT/train_$method"/checkpoints/step_* >/dev/null 2>&1; then
    stamp "train $method start"
    rm -rf "$OUT/train_$method"
    "$AGPO" train --config configs/smollm2_arith.yaml --out "$OUT/train_$method" \
      --train.token-budget "$BUDGET" --train.threads "$THREADS" --log.no-progress "$@"
    stamp "train $method done"
  fi
  evaluate "$method" "$(ls -d "$OUT/train_$method"/checkpoints/step_* | sort -V | tail -1)"
}

evaluate base smollm2-135m-instruct
# Each method as its preset has it (configs/grpo.yaml, agpo_asym.yaml, asym_grpo.yaml), all
# without a KL term (the smollm2 preset's kl_coef 0: no reference copy on 2 cores).
train grpo --algo.advantage grpo --algo.aggregation seq_mean_token_mean
train agpo_asym --algo.advantage agpo_asym --algo.aggregation seq_mean_token_mean
train asym_grpo --algo.advantage asym_grpo --algo.aggregation token_mean

"${PYTHON:-.venv/bin/python}" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = []
for name in ("base", "grpo", "agpo_asym", "asym_grpo"):
    p = json.loads((out / f"eval_{name}" / "passk.json").read_text())
    ks = sorted(int(k.split("@")[1]) for k in p if k.startswith("pass@"))
    steps = "0"
    if name != "base":
        m = [json.loads(l) for l in (out / f"train_{name}" / "metrics.jsonl").read_text().splitlines()]
        steps = f"{len(m)} ({int(m[-1].get('perf/tokens_total', 0))} tok)"
        rows.append((name, steps, [p[f"pass@{k}"] for k in ks]))
    else:
        rows.append((name, steps, [p[f"pass@{k}"] for k in ks]))
head = "| model | RL steps | " + " | ".join(f"pass@{k}" for k in ks) + " |"
lines = [head, "|" + "---|" * (len(ks) + 2)]
lines += [f"| {n} | {s} | " + " | ".join(f"{v:.3f}" for v in vals) + " |" for n, s, vals in rows]
(out / "table.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
stamp "all done"
