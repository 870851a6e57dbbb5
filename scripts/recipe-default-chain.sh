#!/usr/bin/env bash
# The shipped default model, stage by stage: each stage is scripts/recipe-default.sh with its own
# degradation, fine-tuning the previous stage's model (INIT). Stage 1 learns the DRR look's
# strong blur (σ 3 px) with the whole grain kept; the later stages trade that blur for milder
# ones (σ 2, 1.5, then 1.25 px: less gain at the finest scales, which had lifted faint 2–4 px
# structures of the DRRs past the nodules' blob threshold) and keep less of the grain (less
# fine-scale power: the spectrum slope had gone past the radiograph's). The last stage flattens
# the LQ's local contrast (a quarter of it, below a 10-px mean), keeps the whole grain again and
# blurs less (σ 0.75 px), so that the model gives back the lungs' vessels and rib borders (sharper
# lungs than the DRRs', where stage 6 left them softer) without lifting 3-mm specks into blobs.
# RESULTS.md gives each stage's checks. Every stage resumes exactly (its state.safetensors), so
# the chain survives an interruption: run it again with the same OUT_ROOT and it carries on
# where it stopped.
# Knobs: DEVICE [cpu] (tch, with a dxr built --features tch, is ~3× faster on a CPU),
#   OUT_ROOT [runs/chain], PUBLISH=1 (installs the last stage as models/default.*).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_ROOT=${OUT_ROOT:-runs/chain}
# name        steps  sigma  grain  flatten  init
stages=(
  "1-sigma3   5000   3      1      0        -"
  "2-sigma2   2500   2      1      0        1-sigma3"
  "3-grain07  1500   2      0.7    0        2-sigma2"
  "4-grain05  1000   2      0.5    0        3-grain07"
  "5-sigma15  1000   1.5    0.5    0        4-grain05"
  "6-sigma125 1000   1.25   0.5    0        5-sigma15"
  "7-flatten  1000   0.75   1      0.25     6-sigma125"
)
NOTE="DDPM-HQ (SR3 UNet, sr3-small, x0 prediction) trained on pairs whose LQ is the example radiograph made to look like a DRR (fitted tone curve, blur and noise), 128² crops, on the CPU in seven fine-tuning stages (blur σ 3 px, 5000 steps → σ 2 px, 2500 → σ 2 px with 0.7 of the noise kept in the HQ, 1500 → 0.5 of it, 1000 → σ 1.5 px, 1000 → σ 1.25 px, 1000 → σ 0.75 px with the whole noise kept and a quarter of the LQ's local contrast below a 10-px mean taken away, 1000; scripts/recipe-default-chain.sh); restores with ${MODEL_STEPS:-25} DPM-Solver++ steps; moves DRRs toward a radiograph's look with sharper lungs; not for clinical use"
last=${#stages[@]}
k=0
for s in "${stages[@]}"; do
  read -r name steps sigma grain flatten init <<< "$s"
  k=$((k + 1))
  echo "== stage $name: $steps steps, blur σ $sigma px, grain $grain, flatten $flatten, from ${init}"
  initw=""; [[ "$init" != "-" ]] && initw="$OUT_ROOT/$init/model/model.safetensors"
  lr=2e-4; [[ -n "$initw" ]] && lr=1e-4
  publish=0 check=0; [[ $k == "$last" ]] && { publish=${PUBLISH:-0}; check=1; }
  CHECK=$check STEPS=$steps SIGMA=$sigma GRAIN=$grain FLATTEN=$flatten FLATTEN_PX=10 INIT=$initw NOTE="$NOTE" LR=$lr OUT="$OUT_ROOT/$name" PUBLISH=$publish \
    MODEL_STEPS=${MODEL_STEPS:-} RECIPE="DEVICE=${DEVICE:-cpu} scripts/recipe-default-chain.sh (its last stage: $steps steps from $init, blur σ $sigma px, grain $grain, flatten $flatten at 10 px)" \
    scripts/recipe-default.sh
done
