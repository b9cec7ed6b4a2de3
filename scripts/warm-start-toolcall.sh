#!/usr/bin/env bash
# The warm start on BFCL's single-turn tasks (README, "Demonstrations and a supervised warm start"): the experts'
# demonstrations of toolcall-single:train, LoRA SFT with configs/sft-toolcall.yaml, then the whole held-out test
# split (691 tasks) with the base model and with the warm-started one. About 35 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf runs/demos/toolcall-single runs/sft-toolcall runs/eval-toolcall-base runs/eval-toolcall-sft
.venv/bin/gymbox collect toolcall-single:train --policy expert --out runs/demos/toolcall-single
.venv/bin/gymbox sft configs/sft-toolcall.yaml
.venv/bin/gymbox eval toolcall-single:test --policy base --out runs/eval-toolcall-base
.venv/bin/gymbox eval toolcall-single:test --policy runs/sft-toolcall/merged --out runs/eval-toolcall-sft
