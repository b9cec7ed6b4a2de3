#!/usr/bin/env bash
# Sets up (if needed), starts the Docker engine and builds the images (if needed), installs a headless browser
# (if needed), lints, and runs the whole test suite; extra arguments go to pytest (e.g. -m "not container" to
# leave out the container tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/docker.sh
bash scripts/browser.sh
.venv/bin/gymbox swe images  # the swe package images (sources and test tools from PyPI)
.venv/bin/ruff check .
# The import contract in pyproject.toml (layers one way); its report is shown only when a contract is broken.
contracts=$(.venv/bin/lint-imports --no-cache 2>&1) || { echo "$contracts"; exit 1; }
echo "import contracts: $(echo "$contracts" | grep -o '[0-9]* kept, [0-9]* broken')"
exec .venv/bin/python -m pytest -q --durations=20 "$@"
