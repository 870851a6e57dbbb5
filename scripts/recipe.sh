#!/usr/bin/env bash
# The whole DiffusionXRay pipeline on the data we have, end to end, reproducibly:
#   data → DRRs → DDPM-LQ and MUNIT-LQ → three pair sets (bicubic, ddpm, munit) → three DDPM-HQ
#   → evaluation on the held-out region (every model on every degradation) → quality vs steps →
#   nodule CNR and realism of restored held-out DRRs → the best model, f16, as models/default.
#
# Every knob is an environment variable (defaults in brackets); the seeds are fixed, so the same
# knobs give the same numbers. Outputs go to $OUT, one folder per stage, plus $OUT/results/*.md.
#   CONFIG [small]  MUNIT_CONFIG [small]  DEVICE [flex: burn's multi-threaded CPU backend; gpu on a GPU]
#   STEPS_LQ [4000] STEPS_MUNIT [4000] STEPS_HQ [6000]  BATCH [4] PATCH [64] LR_HQ [5e-5]
#   N_DRR [200] N_PAIRS [400] N_EVAL [24] EVAL_SIZE [128] SAMPLER_STEPS [25]
#   STRENGTH [0.4] ILVR [8]  CURVE_STEPS ["5 10 25 50 100 250 1000"]  OUT [runs/recipe]
#   SMOKE=1 shrinks everything to a minutes-long run that checks the recipe itself.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${SMOKE:-0}" == 1 ]]; then
  : "${CONFIG:=tiny}" "${MUNIT_CONFIG:=tiny}" "${STEPS_LQ:=4}" "${STEPS_MUNIT:=4}" "${STEPS_HQ:=4}"
  : "${N_DRR:=6}" "${N_PAIRS:=6}" "${N_EVAL:=2}" "${EVAL_SIZE:=64}" "${PATCH:=32}" "${BATCH:=2}"
  : "${SAMPLER_STEPS:=3}" "${CURVE_STEPS:=2 3}" "${OUT:=runs/recipe-smoke}" "${DEVICE:=cpu}"
fi
CONFIG=${CONFIG:-small}; MUNIT_CONFIG=${MUNIT_CONFIG:-small}; DEVICE=${DEVICE:-flex}
STEPS_LQ=${STEPS_LQ:-4000}; STEPS_MUNIT=${STEPS_MUNIT:-4000}; STEPS_HQ=${STEPS_HQ:-6000}
BATCH=${BATCH:-4}; PATCH=${PATCH:-64}; LR_HQ=${LR_HQ:-5e-5}
N_DRR=${N_DRR:-200}; N_PAIRS=${N_PAIRS:-400}; N_EVAL=${N_EVAL:-24}; EVAL_SIZE=${EVAL_SIZE:-128}
SAMPLER_STEPS=${SAMPLER_STEPS:-25}; STRENGTH=${STRENGTH:-0.4}; ILVR=${ILVR:-8}
CURVE_STEPS=${CURVE_STEPS:-5 10 25 50 100 250 1000}; OUT=${OUT:-runs/recipe}

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dxr-target}
DXR=${DXR:-$CARGO_TARGET_DIR/release/dxr}
[[ -x "$DXR" ]] || cargo build --release
scripts/fetch-data.sh all >/dev/null
CT=(--ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz)
HQ=data/cxr/RG1_UNCR.dcm
mkdir -p "$OUT/results"
log() { echo "== $*" | tee -a "$OUT/results/recipe.log"; }
common=(--config "$CONFIG" --batch "$BATCH" --patch "$PATCH" --device "$DEVICE" --seed 1)
resume() { [[ -f "$1/state.safetensors" ]] && echo --resume || true; }

# 1. LQ domain: training DRRs (views 0…) and held-out DRRs with nodules (views 100000…)
log "DRRs"
[[ -f "$OUT/drr/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$OUT/drr" --count "$N_DRR" --size 256 --nodules 2 --seed 1 --device cpu
[[ -f "$OUT/drr-eval/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$OUT/drr-eval" --count "$N_EVAL" --size 256 --nodules 3 --seed 1 --first-index 100000 --device cpu

# 2. stage 1: the LQ look, two ways
log "DDPM-LQ ($CONFIG, $STEPS_LQ steps)"
"$DXR" train ddpm-lq --lq "$OUT/drr/png16" "${common[@]}" --steps "$STEPS_LQ" --out "$OUT/lq" $(resume "$OUT/lq") --val-every 1000 --save-every 500
log "MUNIT-LQ ($MUNIT_CONFIG, $STEPS_MUNIT steps)"
"$DXR" train munit --hq "$HQ" --lq "$OUT/drr/png16" --config "$MUNIT_CONFIG" --batch "$BATCH" --patch "$PATCH" --device "$DEVICE" --seed 1 \
  --steps "$STEPS_MUNIT" --out "$OUT/munit" $(resume "$OUT/munit") --val-every 1000 --save-every 500

# 3. pair sets: training columns for training, held-out columns for evaluation
for m in bicubic ddpm munit; do
  case $m in
    bicubic) extra=(--scale 4) ;;
    ddpm) extra=(--weights "$OUT/lq/model.safetensors" --strength "$STRENGTH" --ilvr "$ILVR" --steps 25 --device "$DEVICE") ;;
    munit) extra=(--weights "$OUT/munit/munit.safetensors" --device "$DEVICE") ;;
  esac
  log "pairs: $m"
  [[ -d "$OUT/pairs-$m/hq" ]] || "$DXR" pairs --method "$m" --hq "$HQ" --out "$OUT/pairs-$m" --count "$N_PAIRS" --size 128 --seed 1 "${extra[@]}"
  [[ -d "$OUT/eval-$m/hq" ]] || "$DXR" pairs --method "$m" --hq "$HQ" --out "$OUT/eval-$m" --count "$N_EVAL" --size "$EVAL_SIZE" --region heldout --seed 2 "${extra[@]}"
done

# 4. stage 2: one restoration model per pair set
for m in bicubic ddpm munit; do
  log "DDPM-HQ on $m pairs ($CONFIG, $STEPS_HQ steps)"
  "$DXR" train ddpm-hq --pairs "$OUT/pairs-$m" --val "$OUT/eval-$m" "${common[@]}" --lr "$LR_HQ" --steps "$STEPS_HQ" \
    --out "$OUT/hq-$m" $(resume "$OUT/hq-$m") --val-every 1000 --save-every 500 --val-steps 10
done

# 5. every model on every held-out degradation
table="$OUT/results/eval.md"
{
  echo "| DDPM-HQ trained on ↓ / evaluated on → | bicubic LQ | DDPM-LQ LQ | MUNIT-LQ LQ |"
  echo "|---|---|---|---|"
} > "$table"
for m in bicubic ddpm munit; do
  row="| $m pairs |"
  for e in bicubic ddpm munit; do
    log "eval: hq-$m on eval-$e"
    "$DXR" eval --weights "$OUT/hq-$m/model.safetensors" --pairs "$OUT/eval-$e" --steps "$SAMPLER_STEPS" --device "$DEVICE" \
      --csv "$OUT/results/eval-hq-$m-on-$e.csv" > "$OUT/results/eval-hq-$m-on-$e.md"
    row+=" $(grep 'mean ± std' "$OUT/results/eval-hq-$m-on-$e.md" | awk -F'|' '{gsub(/ /,"",$3); gsub(/ /,"",$4); print "PSNR " $3 " dB, SSIM " $4}') |"
  done
  echo "$row" >> "$table"
done
cat "$table"

# 6. quality vs steps for the best model (highest PSNR on its own-method set, learned methods preferred)
best=$(for m in ddpm munit bicubic; do
  p=$(awk -F, 'NR>1 {s+=$2; n++} END {if (n) printf "%.4f", s/n}' "$OUT/results/eval-hq-$m-on-$m.csv")
  echo "$p $m"; done | sort -rn | head -1 | awk '{print $2}')
log "best: hq-$best"
curve="$OUT/results/steps.md"
{ echo "| sampler | steps | PSNR (dB) | SSIM |"; echo "|---|---|---|---|"; } > "$curve"
for s in dpmpp ddim plms ddpm; do
  for n in $CURVE_STEPS; do
    "$DXR" eval --weights "$OUT/hq-$best/model.safetensors" --pairs "$OUT/eval-$best" --sampler "$s" --steps "$n" --device "$DEVICE" \
      --csv "$OUT/results/steps-$s-$n.csv" > /dev/null
    awk -F, -v s="$s" -v n="$n" 'NR>1 {p+=$2; q+=$3; k++} END {printf "| %s | %s | %.3f | %.4f |\n", s, n, p/k, q/k}' "$OUT/results/steps-$s-$n.csv" >> "$curve"
  done
done
cat "$curve"

# 7. held-out DRRs with nodules, before and after restoration: CNR and realism
real="$OUT/results/realism.md"
"$DXR" realism "$OUT/drr-eval/png16" --reference "$HQ" --reference-holdout 0.333 --labels "$OUT/drr-eval" > "$real"
for m in bicubic ddpm munit; do
  "$DXR" restore "$OUT/drr-eval/png16" -o "$OUT/restored-$m" --weights "$OUT/hq-$m/model.safetensors" --steps "$SAMPLER_STEPS" --device "$DEVICE" > /dev/null
  "$DXR" realism "$OUT/restored-$m" --reference "$HQ" --reference-holdout 0.333 --labels "$OUT/drr-eval" | tail -1 >> "$real"
done
cat "$real"

# 8. the best model, f16, as the default
"$DXR" convert "$OUT/hq-$best/model.safetensors" "$OUT/results/default.safetensors" --f16
"$DXR" info "$OUT/results/default.safetensors" | tee "$OUT/results/default.txt"
log "done: $OUT/results (best: hq-$best)"
