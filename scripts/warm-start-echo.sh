#!/usr/bin/env bash
# The warm-start recipe end to end on echo (README, "Demonstrations and a supervised warm start"): the experts'
# demonstrations of the train split, LoRA SFT with configs/sft-echo.yaml, then the held-out test split with the
# base model and with the warm-started one. About 5 minutes on two cores. With --ship, the adapter it made (in
# bfloat16) replaces the default policy's in agent/adapters/smollm2-echo-sft.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
rm -rf runs/demos/echo runs/sft-echo runs/eval-echo-base runs/eval-sft-echo
.venv/bin/gymbox collect echo-demo:train --policy expert --out runs/demos/echo
.venv/bin/gymbox sft configs/sft-echo.yaml
.venv/bin/gymbox eval echo-demo:test --policy base --out runs/eval-echo-base
.venv/bin/gymbox eval echo-demo:test --policy runs/sft-echo/merged --out runs/eval-sft-echo
if [ "${1:-}" = "--ship" ]; then
    .venv/bin/python - <<'PY'
import json

import torch
from safetensors.torch import load_file, save_file

src, dst = "runs/sft-echo/final", "agent/adapters/smollm2-echo-sft"
weights = load_file(f"{src}/adapter_model.safetensors")
save_file({k: v.to(torch.bfloat16).contiguous() for k, v in weights.items()}, f"{dst}/adapter_model.safetensors")
config = json.load(open(f"{src}/adapter_config.json"))
config["base_model_name_or_path"] = "SmolLM2-135M-Instruct"  # a prepared model's name, not this machine's path
json.dump(config, open(f"{dst}/adapter_config.json", "w"), indent=2, sort_keys=True)
print(f"shipped {src} to {dst}; `gymbox models prepare` merges it again")
PY
fi
