#!/usr/bin/env bash
# Build .venv-verl: verl's own environment for agpo's verl integration tests.
#
# verl pins transformers<5.11 and antlr4 4.9 (via its math extras), which conflict with agpo's main
# environment, so verl lives in a separate environment (scripts/separate_env.sh: the venv, the
# torch pin, the stamp): verl without CUDA extras (no vllm/sglang/flash-attn), then agpo itself
# with --no-deps: inside verl agpo needs only torch, which is already there.
#
# Usage: scripts/verl_env.sh [VENV_DIR]     (default: .venv-verl at the repository root)
# Idempotent: a finished environment is marked by a stamp file and reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/separate_env.sh"
VERL_PIN="${VERL_PIN:-verl==0.9.1}"

env_open verl "${1:-$ROOT/.venv-verl}" "$VERL_PIN"
pin_install "$VERL_PIN"
# verl imports these at trainer import time but lists them only in its verl-core extra, whose
# other members (TransferQueue, torchcodec, nvtx, ...) are GPU-run extras we do not need.
pin_install pytest cachetools fastapi uvicorn pyzmq msgspec
"${PIP[@]}" install --quiet --no-deps -e "$ROOT"
env_close
