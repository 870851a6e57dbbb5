#!/usr/bin/env bash
# The shipped default model, stage by stage: each stage is scripts/recipe-default.sh with its own
# degradation, fine-tuning the previous stage's model (INIT). Stage 1 learns the DRR look's
# strong blur (σ 3 px) with the whole grain kept; the later stages trade that blur for milder
# ones (σ 2, 1.5, then 1.25 px: less gain at the finest scales, which had lifted faint 2–4 px
# structures of the DRRs past the nodules' blob threshold) and keep less of the grain (less
# fine-scale power: the spectrum slope had gone past the radiograph's). RESULTS.md gives each
# stage's checks. Every stage resumes exactly (its state.safetensors), so the chain survives an
# interruption: run it again with the same OUT_ROOT and it carries on where it stopped.
# Knobs: DEVICE [cpu] (tch, with a dxr built --features tch, is ~3× faster on a CPU),
#   OUT_ROOT [runs/chain], PUBLISH=1 (installs the last stage as models/default.*).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_ROOT=${OUT_ROOT:-runs/chain}
# name        steps  sigma  grain  init
stages=(
  "1-sigma3   5000   3      1      -"
  "2-sigma2   2500   2      1      1-sigma3"
  "3-grain07  1500   2      0.7    2-sigma2"
  "4-grain05  1000   2      0.5    3-grain07"
  "5-sigma15  1000   1.5    0.5    4-grain05"
  "6-sigma125 1000   1.25   0.5    5-sigma15"
)
last=${#stages[@]}
k=0
for s in "${stages[@]}"; do
  read -r name steps sigma grain init <<< "$s"
  k=$((k + 1))
  echo "== stage $name: $steps steps, blur σ $sigma px, grain $grain, from ${init}"
  initw=""; [[ "$init" != "-" ]] && initw="$OUT_ROOT/$init/model/model.safetensors"
  lr=2e-4; [[ -n "$initw" ]] && lr=1e-4
  publish=0 check=0; [[ $k == "$last" ]] && { publish=${PUBLISH:-0}; check=1; }
  CHECK=$check STEPS=$steps SIGMA=$sigma GRAIN=$grain INIT=$initw LR=$lr OUT="$OUT_ROOT/$name" PUBLISH=$publish \
    MODEL_STEPS=${MODEL_STEPS:-} RECIPE="DEVICE=${DEVICE:-cpu} scripts/recipe-default-chain.sh (its last stage: $steps steps from $init, blur σ $sigma px, grain $grain)" \
    scripts/recipe-default.sh
done
