#!/usr/bin/env bash
# The shipped default model, reproducibly: a DDPM-HQ trained on pairs whose LQ is the real
# radiograph made to look like a DRR (a tone curve and a blur fitted by measurement), then the
# checks of a restoration on held-out DRRs (views, poses and nodules no step of training used).
#   data → DRRs (training views; held-out views at 256² and 512²) → fit the DRR look (and the
#   fixed-filter baseline) → pairs → train → restore the held-out views and their nodule-free
#   twins → `dxr realism --before` (the checks), for the model and for the fixed filter, against
#   the radiograph and (check 6) against a second patient's (data/cxr2, when fetched).
# Knobs (environment; defaults in brackets): DEVICE [cpu] STEPS [6000] BATCH [4] PATCH [128]
#   LR [2e-4] PREDICTION [x0] CONFIG [sr3-small] INIT [] (a model to fine-tune from) N_DRR [100]
#   N_PAIRS [800] N_EVAL [12] SAMPLER_STEPS [25] SIGMA [0 0.5 1 1.5 2 3 4] AIR [0.4] (the fraction of pairs with black air
#   beyond a soft edge, as around a DRR's body) GRAIN [1] FLATTEN [0] FLATTEN_PX [10] OUT [runs/default].
#   HQ_TONE [radiograph] (drr: the HQ crops get the DRR look's tone curve too, so the model keeps
#   its input's grey scale and restores detail; the curve toward the radiograph is then recorded
#   in the model, gentle, for `dxr restore --tone` and the page's slider) PAGE_TONE [0] (the
#   strength the page starts at; the checks run at tone 0 and at PAGE_TONE).
#   CARD [the note] (the two sentences the page shows for the published model).
#   MODEL=<weights> skips steps 4–5 and checks that model instead (e.g. the shipped default).
#   SAVE_EVERY [250] (steps between saved states: a resume loses at most that many).
#   CHECK=0 stops after training (a stage of scripts/recipe-default-chain.sh).
#   PUBLISH=1 installs the model as models/default.safetensors (+ .json, whose note is NOTE when
#   given) and the sheets in docs/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dxr-target}
DXR=${DXR:-$CARGO_TARGET_DIR/release/dxr}
DEVICE=${DEVICE:-cpu}; STEPS=${STEPS:-6000}; BATCH=${BATCH:-4}; PATCH=${PATCH:-128}
LR=${LR:-2e-4}; PREDICTION=${PREDICTION:-x0}; CONFIG=${CONFIG:-sr3-small}; INIT=${INIT:-}
N_DRR=${N_DRR:-100}; N_PAIRS=${N_PAIRS:-800}; N_EVAL=${N_EVAL:-12}; SAMPLER_STEPS=${SAMPLER_STEPS:-25}
AIR=${AIR:-0.4}
# CURVE_STEPS: the sampler steps of the quality/speed curve; MODEL_STEPS: the steps recorded in
# the published model (read from that curve; empty = the sampler's default)
CURVE_STEPS=${CURVE_STEPS:-1 2 4 8 25}; MODEL_STEPS=${MODEL_STEPS:-}
# SIGMA: the blur widths fit-drr-look may choose from (px at the radiograph's 256-px scale)
SIGMA=${SIGMA:-0 0.5 1 1.5 2 3 4}
# GRAIN: the share of the LQ's noise draw the HQ crops get too (1: the model keeps fine grain and
# undoes the blur; 0: it learns to remove the grain)
GRAIN=${GRAIN:-1}
# FLATTEN, FLATTEN_PX: the share of the local contrast below a FLATTEN_PX-px local mean that the LQ
# alone loses before its blur (0: none); the model then learns to give it back, which sharpens
# the lungs' vessels and rib borders of a DRR (RESULTS.md, "Sharper lungs against nothing invented")
FLATTEN=${FLATTEN:-0}; FLATTEN_PX=${FLATTEN_PX:-10}
HQ_TONE=${HQ_TONE:-radiograph}; PAGE_TONE=${PAGE_TONE:-0}
OUT=${OUT:-runs/default}
[[ -x "$DXR" ]] || cargo build --release
scripts/fetch-data.sh all >/dev/null
CT=(--ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz)
R="$OUT/results"; mkdir -p "$R"
log() { echo "== $*" | tee -a "$R/recipe.log"; }

# 1. the radiograph at the DRRs' pixel scale (a 256² DRR spans 400 mm; 256 px across the chest)
[[ -f "$OUT/hq/RG1_UNCR.png" ]] || "$DXR" resize data/cxr/RG1_UNCR.dcm -o "$OUT/hq" --width 256
HQ="$OUT/hq/RG1_UNCR.png"

# 2. DRRs: training views 0…; held-out views from index 100000 (256²) and 200000 (512²), other
#    seeds, more nodules; each with its nodule-free twin (clean/)
log "DRRs"
[[ -f "$OUT/drr/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$OUT/drr" --count "$N_DRR" --size 256 --nodules 2 --seed 1 --device cpu >/dev/null
[[ -f "$OUT/eval256/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$OUT/eval256" --count "$N_EVAL" --size 256 --nodules 3 --seed 7 --first-index 100000 --device cpu >/dev/null
[[ -f "$OUT/eval512/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$OUT/eval512" --count $(( (N_EVAL + 1) / 2 )) --size 512 --nodules 3 --seed 8 --first-index 200000 --device cpu >/dev/null

# 3. the DRR look (tone curve + blur, chosen by measurement) and the fixed-filter baseline
log "fit the DRR look"
"$DXR" fit-drr-look --hq "$HQ" --drr "$OUT/drr/png16" --sigma $SIGMA -o "$OUT/drr-look.json" --filter-out "$OUT/filter.json" | tee "$R/fit-drr-look.md"

MODEL=${MODEL:-}
if [[ -z "$MODEL" ]]; then
# 4. pairs from the radiograph's training columns
log "pairs"
# the LQ/HQ options of the pairs: the grain kept in the HQ, the LQ's flattening
lq=(); [[ "$GRAIN" != 0 ]] && lq=(--grain-in-hq "$GRAIN")
[[ "$FLATTEN" != 0 ]] && lq+=(--flatten "$FLATTEN" --flatten-px "$FLATTEN_PX")
lq_tone=(); [[ "$HQ_TONE" == drr ]] && lq_tone=(--hq-in-drr-tone)
lq+=("${lq_tone[@]}")
[[ -d "$OUT/pairs/hq" ]] || "$DXR" pairs --method drr --weights "$OUT/drr-look.json" --hq "$HQ" --out "$OUT/pairs" --count "$N_PAIRS" --size "$PATCH" --seed 1 --air "$AIR" --augment strong "${lq[@]}" >/dev/null
[[ -d "$OUT/pairs-eval/hq" ]] || "$DXR" pairs --method drr --weights "$OUT/drr-look.json" --hq "$HQ" --out "$OUT/pairs-eval" --count 8 --size 64 --region heldout --seed 2 "${lq_tone[@]}" >/dev/null

# 5. the restoration model
log "DDPM-HQ ($CONFIG, $STEPS steps, batch $BATCH, ${PATCH}², $PREDICTION, $DEVICE)"
init=(); [[ -n "$INIT" ]] && init=(--init "$INIT")
resume=(); [[ -f "$OUT/model/state.safetensors" ]] && resume=(--resume)
start=$(date +%s)
"$DXR" train ddpm-hq --pairs "$OUT/pairs" --val "$OUT/pairs-eval" --config "$CONFIG" --prediction "$PREDICTION" \
  --batch "$BATCH" --patch "$PATCH" --lr "$LR" --steps "$STEPS" --device "$DEVICE" --seed 1 \
  --val-every 1000 --save-every "${SAVE_EVERY:-250}" --out "$OUT/model" "${init[@]}" "${resume[@]}" 2>&1 | tee "$R/train.log" | tail -3
echo "training wall time this run: $(( $(date +%s) - start )) s" | tee -a "$R/recipe.log"
MODEL="$OUT/model/model.safetensors"
fi

[[ "${CHECK:-1}" == 0 ]] && { log "CHECK=0: no checks"; exit 0; }
# 5b. the tone curve toward the radiograph (the fixed filter's DRR → radiograph curve, made
#     gentle), recorded in the model: restorations keep their grey scale unless --tone asks
if [[ "$HQ_TONE" == drr ]]; then
  "$DXR" convert "$MODEL" "$OUT/model-tone.safetensors" --tone "$OUT/filter.json" --tone-default "$PAGE_TONE" >/dev/null
  MODEL="$OUT/model-tone.safetensors"
fi
TONES=(0); [[ "$PAGE_TONE" != 0 ]] && TONES+=("$PAGE_TONE")
# 6. the checks on the held-out views, for the model (at tone 0 and at the page's tone) and for
#    the fixed filter; the second implementation (scripts/confirm-checks.sh) confirms the model's
: > "$R/checks.md"; : > "$R/confirm.md"
for set in eval256 eval512; do
  log "checks on $set"
  for what in png16 clean/png16; do
    sub=${what%%/*}; [[ "$what" == png16 ]] && sub=views
    for t in "${TONES[@]}"; do
      dest="$OUT/restored-$set/$sub"; [[ "$t" != 0 ]] && dest="$OUT/restored-$set-tone$t/$sub"
      "$DXR" restore "$OUT/$set/$what" -o "$dest" --weights "$MODEL" --steps "$SAMPLER_STEPS" --seed 1 --bits 16 --labels "$OUT/$set" --device "$DEVICE" --tone "$t" >/dev/null 2>&1
    done
    "$DXR" filter --filter "$OUT/filter.json" "$OUT/$set/$what" -o "$OUT/filtered-$set/$sub"
  done
  kinds=(restored); [[ "$PAGE_TONE" != 0 ]] && kinds+=("restored-tone$PAGE_TONE"); kinds+=(filtered)
  for kind in "${kinds[@]}"; do
    d="$OUT/${kind%%-tone*}-$set"; [[ "$kind" == *-tone* ]] && d="$OUT/restored-$set-tone${kind##*-tone}"
    echo "### $kind, $set" | tee -a "$R/checks.md"
    "$DXR" realism "$d/views" --before "$OUT/$set/png16" --labels "$OUT/$set" \
      --reference "$HQ" --reference-holdout 0 \
      --clean-before "$OUT/$set/clean/png16" --clean-after "$d/clean" | tee -a "$R/checks.md"
    if [[ "$kind" != filtered && -x scripts/confirm-checks.sh ]]; then
      echo "### $kind, $set (second implementation)" >> "$R/confirm.md"
      scripts/confirm-checks.sh --before "$OUT/$set/png16" --after "$d/views" --labels "$OUT/$set" \
        --clean-before "$OUT/$set/clean/png16" --clean-after "$d/clean" --reference "$HQ" \
        --json "$d/confirm.json" >> "$R/confirm.md" 2>&1 || true
    fi
  done
done

# 6b. check 6's other patient: the same checks against a second patient's radiograph
#     (data/cxr2, from scripts/fetch-data.sh; never trained on), without its burned-in text (top
#     rows, right margin) and at the first radiograph's lung-field scale
if [[ -s data/cxr2/bob-med-tb-pa.png ]]; then
  HQ2="$OUT/hq2/bob-med-tb-pa.png"
  if [[ ! -f "$HQ2" ]]; then
    crop=0,0.135,0.879,1
    "$DXR" resize data/cxr2/bob-med-tb-pa.png -o "$OUT/hq2-full" --width 451 --crop $crop 2>/dev/null
    lungs() { "$DXR" scale "$1" 2>/dev/null | awk -F'|' -v f="$(basename "$1")" 'index($0, f) {gsub(/ /, "", $5); print $5}'; }
    width=$(echo "451 * $(lungs "$HQ") / $(lungs "$OUT/hq2-full/bob-med-tb-pa.png")" | bc -l)
    "$DXR" resize data/cxr2/bob-med-tb-pa.png -o "$OUT/hq2" --width "$(printf '%.0f' "$width")" --crop $crop
  fi
  : > "$R/checks-cxr2.md"
  for set in eval256 eval512; do
    for kind in restored filtered; do
      echo "### $kind, $set, against a second patient's radiograph" | tee -a "$R/checks-cxr2.md"
      "$DXR" realism "$OUT/$kind-$set/views" --before "$OUT/$set/png16" --labels "$OUT/$set" \
        --reference "$HQ2" --clean-before "$OUT/$set/clean/png16" \
        --clean-after "$OUT/$kind-$set/clean" | tee -a "$R/checks-cxr2.md"
    done
  done
else
  log "no second radiograph (scripts/fetch-data.sh cxr2): check 6's other patient not run"
fi

# 7. before/after sheets (input, fixed filter, model; nodule boxes), and a close-up of the 512²
#    right lungs at their own pixels with one more column: the model's tone curve alone (each
#    DRR histogram-matched to its restoration), so that what the network adds beyond its grey
#    scale shows
"$DXR" sheet "$OUT/eval256/png16" "$OUT/filtered-eval256/views" "$OUT/restored-eval256/views" --labels "$OUT/eval256" --count 4 -o "$R/sheet-256.png"
"$DXR" sheet "$OUT/eval512/png16" "$OUT/filtered-eval512/views" "$OUT/restored-eval512/views" --labels "$OUT/eval512" --count 3 --thumb 384 -o "$R/sheet-512.png"
"$DXR" sheet "$OUT/eval256/clean/png16" "$OUT/filtered-eval256/clean" "$OUT/restored-eval256/clean" --count 3 -o "$R/sheet-256-clean.png"
"$DXR" filter --tone-of "$OUT/restored-eval512/views" "$OUT/eval512/png16" -o "$OUT/toned-eval512"
"$DXR" sheet "$OUT/eval512/png16" "$OUT/filtered-eval512/views" "$OUT/toned-eval512" "$OUT/restored-eval512/views" --labels "$OUT/eval512" --count 3 --thumb 384 --crop 0.1,0.2,0.5,0.75 -o "$R/sheet-512-closeup.png"
# the anatomy sheet: DRR | model at tone 0 | model at the page's tone; whole views and a close-up
# of the spine behind the heart and the lower lungs
if [[ "$PAGE_TONE" != 0 ]]; then
  for set in eval256 eval512; do
    thumb=256; [[ $set == eval512 ]] && thumb=384
    "$DXR" sheet "$OUT/$set/png16" "$OUT/restored-$set/views" "$OUT/restored-$set-tone$PAGE_TONE/views" --labels "$OUT/$set" --count 3 --thumb $thumb -o "$R/sheet-tone-${set#eval}.png"
  done
  "$DXR" sheet "$OUT/eval512/png16" "$OUT/restored-eval512/views" "$OUT/restored-eval512-tone$PAGE_TONE/views" --labels "$OUT/eval512" --count 3 --thumb 384 --crop 0.3,0.35,0.75,0.9 -o "$R/sheet-tone-512-heart.png"
fi

# 8. the quality/speed curve over sampler steps (held-out 256² views): it sets the model's steps
log "steps curve"
curve="$R/steps-curve.md"
echo "| steps | s per view | 1 slope | 2 stride peaks | 3 distance | 4 CNR after/before | 5 new blobs | passed |" > "$curve"
echo "|---|---|---|---|---|---|---|---|" >> "$curve"
for n in $CURVE_STEPS; do
  d="$OUT/curve-$n"
  t0=$(date +%s.%N)
  "$DXR" restore "$OUT/eval256/png16" -o "$d/views" --weights "$MODEL" --steps "$n" --seed 1 --labels "$OUT/eval256" --device "$DEVICE" >/dev/null 2>&1
  t1=$(date +%s.%N)
  "$DXR" restore "$OUT/eval256/clean/png16" -o "$d/clean" --weights "$MODEL" --steps "$n" --seed 1 --labels "$OUT/eval256" --device "$DEVICE" >/dev/null 2>&1
  per=$(echo "($t1 - $t0) / $(ls "$OUT/eval256/png16" | wc -l)" | bc -l)
  "$DXR" realism "$d/views" --before "$OUT/eval256/png16" --labels "$OUT/eval256" --reference "$HQ" \
    --clean-before "$OUT/eval256/clean/png16" --clean-after "$d/clean" > "$d/checks.md"
  row=$(awk -F'|' '/^\| [1-5] /{gsub(/^ +| +$/, "", $4); printf "%s | ", $4}' "$d/checks.md")
  printf '| %s | %.2f | %s%s |\n' "$n" "$per" "$row" "$(grep -o '[0-9] of 5' "$d/checks.md")" >> "$curve"
done
cat "$curve"

if [[ "${PUBLISH:-0}" == 1 ]]; then
  steps=(); [[ -n "$MODEL_STEPS" ]] && steps=(--steps "$MODEL_STEPS")
  tone=(); [[ "$HQ_TONE" == drr ]] && tone=(--tone "$OUT/filter.json" --tone-default "$PAGE_TONE")
  "$DXR" convert "$MODEL" models/default.safetensors --f16 "${steps[@]}" "${tone[@]}"
  for f in "$R"/sheet-tone-*.png; do [[ -f "$f" ]] && cp "$f" "docs/$(basename "$f")"; done
  mkdir -p docs
  cp "$R/sheet-256.png" docs/sheet-drr-restored.png
  cp "$R/sheet-512.png" docs/sheet-drr-restored-512.png
  cp "$R/sheet-256-clean.png" docs/sheet-drr-clean-restored.png
  cp "$R/sheet-512-closeup.png" docs/sheet-drr-restored-512-closeup.png
  sha=$(sha256sum models/default.safetensors | cut -d' ' -f1)
  params=$("$DXR" info models/default.safetensors | awk '/^parameters:/ {print $2}')
  # the model's own record (MODEL= skips the pairs, whose scale.json said the same)
  chest=$("$DXR" info models/default.safetensors | sed -n 's/^scale: .*lung fields ~\([0-9.]*\) px wide.*/\1/p')
  note=${NOTE:-}
  if [[ -z "$note" ]]; then
    kept=""; [[ "$GRAIN" != 0 ]] && kept="; the same noise draw kept in the HQ, times $GRAIN"
    flat=""; [[ "$FLATTEN" != 0 ]] && flat="; $FLATTEN of the LQ's local contrast below a $FLATTEN_PX-px mean taken away"
    note="DDPM-HQ ($CONFIG, $PREDICTION) trained on pairs whose LQ is the example radiograph made to look like a DRR (fitted tone curve, blur and noise$kept$flat), ${PATCH}² crops, $STEPS steps (scripts/recipe-default.sh); moves DRRs toward a radiograph's look; not for clinical use"
  fi
  cat > models/default.json <<JSON
{"note": "$note", "card": "${CARD:-$note}", "sha256": "$sha", "parameters": ${params:-null}, "trained_on": "drr-look", "recipe": "${RECIPE:-DEVICE=$DEVICE STEPS=$STEPS CONFIG=$CONFIG SIGMA='$SIGMA' GRAIN=$GRAIN FLATTEN=$FLATTEN INIT=$INIT MODEL_STEPS=$MODEL_STEPS scripts/recipe-default.sh}", "sampler_steps": ${MODEL_STEPS:-null}, "scale": {"chest_px": ${chest:-null}, "note": "lung-field width of the radiograph at 256 px wide that the model was trained on (dxr scale); mm/px not known (the file holds no spacing)"}}
JSON
  log "published models/default.safetensors and models/default.json"
fi
