# The shared half of scripts/vllm_env.sh and scripts/verl_env.sh, sourced by both (not run).
#
# Each of them builds a separate, gitignored virtual environment for a package whose pins
# conflict with agpo's main .venv: the venv, torch first with the same CPU pin as the Makefile
# (an unpinned torch pulls a multi-GB CUDA build; every install line repeats the pin so pip's
# resolver keeps it), then its own packages, then a stamp. The stamp records the pins and the
# hashes of the calling script, of this file and of agpo's pyproject.toml (extras' pins and entry
# points live there), so editing any of them re-installs; an unchanged environment is reused.
#
#   source "$(dirname "${BASH_SOURCE[0]}")/separate_env.sh"
#   env_open NAME VENV [PIN...]    # exits 0 here when VENV's stamp matches; else creates VENV
#   pin_install ARGS...            # pip install --quiet ARGS... with the torch pin
#   env_close                      # writes the stamp

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TORCH_PIN="${TORCH_PIN:-torch==2.13.0}"

env_open() {
    ENV_NAME=$1 VENV=$2
    shift 2
    STAMP="$VENV/.agpo-$ENV_NAME-installed"
    local script="${BASH_SOURCE[${#BASH_SOURCE[@]}-1]}"  # the script that was run
    KEY="$TORCH_PIN ${*:+$* }$(sha256sum "$script" "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" \
        | cut -c1-16 | tr '\n' ' ')"
    if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]]; then
        echo "$ENV_NAME environment ready: $VENV"
        exit 0
    fi
    rm -f "$STAMP"  # a build that stops half-way leaves no stamp an older key could match
    ENV_START=$(date +%s)
    test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
    PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
    "${PIP[@]}" install --quiet "$TORCH_PIN"
}

pin_install() {
    "${PIP[@]}" install --quiet "$@" "$TORCH_PIN"
}

env_close() {
    echo "$KEY" > "$STAMP"
    echo "$ENV_NAME environment built in $(( $(date +%s) - ENV_START )) s: $VENV"
}
