#!/usr/bin/env bash
# Makes a real headless browser available for the browser tests (`gymbox webshop serve`, `gymbox view`): installs
# Debian's chromium when missing (needs root; about 400 MB, 1.5 minutes). Playwright (a Python package in the dev
# extra) drives it and downloads no browser of its own.
set -euo pipefail

if ! command -v chromium >/dev/null; then
    echo "browser: installing chromium from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
