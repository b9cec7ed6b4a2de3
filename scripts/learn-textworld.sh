#!/usr/bin/env bash
# The learning result on easy TextWorld games (README, "Learning on a multi-turn task"): the experts' walkthroughs
# of textworld-easy:train, LoRA SFT (configs/sft-textworld.yaml), GRPO from the SFT model with 3 seeds
# (configs/grpo-textworld.yaml), and the held-out test split (48 games, greedy) for the base model, the SFT model and
# each seed's last GRPO step. Then the table and plot (scripts/learning_table.py). About 90 minutes on two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
SEEDS=(0 1 2)
EVAL=(--max-tokens 64 --max-turns 12)  # the same sampling and limits as the GRPO stage's rollouts
rm -rf runs/demos/textworld-easy runs/sft-textworld runs/eval-tw-* runs/grpo-textworld-s*
.venv/bin/gymbox collect textworld-easy:train --policy expert --out runs/demos/textworld-easy
.venv/bin/gymbox sft configs/sft-textworld.yaml
.venv/bin/gymbox eval textworld-easy:test --policy base "${EVAL[@]}" --out runs/eval-tw-base
.venv/bin/gymbox eval textworld-easy:test --policy runs/sft-textworld/merged "${EVAL[@]}" --out runs/eval-tw-sft
for seed in "${SEEDS[@]}"; do
  .venv/bin/gymbox train configs/grpo-textworld.yaml --seed "$seed" --out "runs/grpo-textworld-s$seed" --fresh
  # The last checkpoint (named by optimizer steps: a step whose groups all tied made none).
  last="runs/grpo-textworld-s$seed/checkpoints/$(cat "runs/grpo-textworld-s$seed/checkpoints/latest")/model"
  .venv/bin/gymbox eval textworld-easy:test --policy "$last" "${EVAL[@]}" --out "runs/eval-tw-grpo-s$seed"
done
.venv/bin/python scripts/learning_table.py --title "textworld-easy:test" --base runs/eval-tw-base \
  --sft runs/eval-tw-sft --grpo runs/eval-tw-grpo-s* --plot docs/learning-textworld.png
