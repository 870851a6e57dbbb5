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
#   OUT_ROOT [runs/chain], PUBLISH=1 (installs the last stage as models/default.*), PAGE_TONE [0] (the strength the
#   page's Tone slider starts at; the last stage's checks run at 0 and at it).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_ROOT=${OUT_ROOT:-runs/chain}
# Stage 8 keeps the DRR's grey scale: its HQ crops get the DRR look's tone curve too, so the
# model restores detail only (the stages before learned one radiograph's processing as well,
# which pushed the mediastinum and abdomen toward white); the curve toward the radiograph is
# recorded in the model, gentle, as a choice (`dxr restore --tone`, the page's slider).
# name        steps  sigma  grain  flatten  hq-tone     init
stages=(
  "1-sigma3   5000   3      1      0        radiograph  -"
  "2-sigma2   2500   2      1      0        radiograph  1-sigma3"
  "3-grain07  1500   2      0.7    0        radiograph  2-sigma2"
  "4-grain05  1000   2      0.5    0        radiograph  3-grain07"
  "5-sigma15  1000   1.5    0.5    0        radiograph  4-grain05"
  "6-sigma125 1000   1.25   0.5    0        radiograph  5-sigma15"
  "7-flatten  1000   0.75   1      0.25     radiograph  6-sigma125"
  "8-drrtone  ${STAGE8_STEPS:-1000}   0.75   1      0.25     drr         7-flatten"
)
NOTE="DDPM-HQ (SR3 UNet, sr3-small, x0 prediction) trained on pairs made from one real chest radiograph: the LQ is the radiograph made to look like a DRR (fitted tone curve, blur, noise, a quarter of its local contrast flattened), the HQ is the same radiograph in the DRR's grey scale, so the model restores detail and keeps its input's grey scale; 128² crops, on the CPU in eight fine-tuning stages (stages 1–7 as before, then 1000 steps with the HQ in the DRR's tone; scripts/recipe-default-chain.sh); restores with ${MODEL_STEPS:-25} DPM-Solver++ steps; records a gentle tone curve toward the radiograph's grey scale (dxr restore --tone, the page's Tone slider; off by default); not for clinical use"
CARD="Trained on a single real chest radiograph made to look like a DRR, this model sharpens a DRR's fine structure — vessels, rib borders, nodules, the spine behind the heart — and keeps the DRR's own grey scale; the Tone slider moves the result toward that radiograph's look. It has seen one patient and minutes of CPU training, it can miss or soften the finest grain, and it is not for clinical use."
last=${#stages[@]}
k=0
for s in "${stages[@]}"; do
  read -r name steps sigma grain flatten hqtone init <<< "$s"
  k=$((k + 1))
  echo "== stage $name: $steps steps, blur σ $sigma px, grain $grain, flatten $flatten, from ${init}"
  initw=""; [[ "$init" != "-" ]] && initw="$OUT_ROOT/$init/model/model.safetensors"
  lr=2e-4; [[ -n "$initw" ]] && lr=1e-4
  publish=0 check=0; [[ $k == "$last" ]] && { publish=${PUBLISH:-0}; check=1; }
  HQ_TONE=$hqtone PAGE_TONE=${PAGE_TONE:-0} CHECK=$check STEPS=$steps SIGMA=$sigma GRAIN=$grain FLATTEN=$flatten FLATTEN_PX=10 INIT=$initw NOTE="$NOTE" CARD="$CARD" LR=$lr OUT="$OUT_ROOT/$name" PUBLISH=$publish \
    MODEL_STEPS=${MODEL_STEPS:-} RECIPE="DEVICE=${DEVICE:-cpu} scripts/recipe-default-chain.sh (its last stage: $steps steps from $init, blur σ $sigma px, grain $grain, flatten $flatten at 10 px)" \
    scripts/recipe-default.sh
done
