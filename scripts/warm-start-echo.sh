#!/usr/bin/env bash
# The warm-start recipe end to end on echo (README, "Demonstrations and a supervised warm start"): the experts'
# demonstrations of the train split, LoRA SFT with configs/sft-echo.yaml, then the held-out test split with the
# base model and with the warm-started one. About 5 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf runs/demos/echo runs/sft-echo runs/eval-echo-base runs/eval-sft-echo
.venv/bin/gymbox collect echo-demo:train --policy expert --out runs/demos/echo
.venv/bin/gymbox sft configs/sft-echo.yaml
.venv/bin/gymbox eval echo-demo:test --policy default --out runs/eval-echo-base
.venv/bin/gymbox eval echo-demo:test --policy runs/sft-echo/merged --out runs/eval-sft-echo
