#!/usr/bin/env bash
# Build .venv-verl: verl's own environment for agpo's verl integration tests.
#
# verl pins transformers<5.11 and antlr4 4.9 (via its math extras), which conflict with agpo's main
# environment, so verl lives in a separate, gitignored virtual environment. torch is installed
# first with the same CPU pin as the Makefile (an unpinned torch pulls a multi-GB CUDA build),
# then verl without CUDA extras (no vllm/sglang/flash-attn), then agpo itself with --no-deps:
# inside verl agpo needs only torch, which is already there.
#
# Usage: scripts/verl_env.sh [VENV_DIR]     (default: .venv-verl at the repository root)
# Idempotent: a finished environment is marked by a stamp file and reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-verl}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"
VERL_PIN="${VERL_PIN:-verl==0.9.1}"
STAMP="$VENV/.agpo-verl-installed"
# The stamp records the pins and the hashes of this script and of agpo's pyproject.toml (its
# entry points, e.g. the verl plugin, are installed metadata), so editing either re-installs.
KEY="$TORCH_PIN $VERL_PIN $(sha256sum "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" | cut -c1-16 | tr '\n' ' ')"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    echo "verl environment ready: $VENV"
    exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${PIP[@]}" "$TORCH_PIN"
# torch is repeated so pip's resolver keeps the CPU build instead of swapping it out.
"${PIP[@]}" "$VERL_PIN" "$TORCH_PIN"
# verl imports these at trainer import time but lists them only in its verl-core extra, whose
# other members (TransferQueue, torchcodec, nvtx, ...) are GPU-run extras we do not need.
"${PIP[@]}" pytest cachetools fastapi uvicorn pyzmq msgspec "$TORCH_PIN"
"${PIP[@]}" --no-deps -e "$ROOT"
echo "$KEY" > "$STAMP"
echo "verl environment built in $(( $(date +%s) - start )) s: $VENV"
