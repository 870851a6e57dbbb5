#!/usr/bin/env bash
# The shipped default (or MODEL) on held-out DRR sets that no training step and no choice of the
# model used: sets at 256² and 512² with their own seeds and index ranges (views 300000…), each
# view with its nodule-free twin. Every set is restored at tone 0 and at the model's page tone,
# then checked by `dxr realism --before` (checks 1–7) and by the second implementation
# (scripts/confirm-checks.sh). Prints one row per set and tone; the full outputs stay in OUT.
# Knobs: MODEL [models/default.safetensors] OUT [runs/check-default] SETS256 [4] SETS512 [4]
#   VIEWS256 [12] VIEWS512 [6] NODULES [8] TONE [the model's page default] DEVICE [cpu]
#   CONFIRM [1] (0: only dxr realism)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dxr-target}
DXR=${DXR:-$CARGO_TARGET_DIR/release/dxr}
MODEL=${MODEL:-models/default.safetensors}; OUT=${OUT:-runs/check-default}
SETS256=${SETS256:-4}; SETS512=${SETS512:-4}; VIEWS256=${VIEWS256:-12}; VIEWS512=${VIEWS512:-6}
NODULES=${NODULES:-8}; DEVICE=${DEVICE:-cpu}; CONFIRM=${CONFIRM:-1}
[[ -x "$DXR" ]] || cargo build --release
scripts/fetch-data.sh all >/dev/null
CT=(--ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz)
mkdir -p "$OUT"
HQ="$OUT/hq/RG1_UNCR.png"
[[ -f "$HQ" ]] || "$DXR" resize data/cxr/RG1_UNCR.dcm -o "$OUT/hq" --width 256 >/dev/null
TONE=${TONE:-$("$DXR" info "$MODEL" | sed -n 's/.*the page starts at \([0-9]*\) %.*/\1/p')}
TONE=${TONE:-0}; [[ "$TONE" == *.* ]] || TONE=$(echo "scale=2; $TONE / 100" | bc | sed 's/^\./0./')
tones=(0); [[ "$TONE" != 0 && "$TONE" != "0" && "$TONE" != ".00" ]] && tones+=("$TONE")
sets=()
for k in $(seq 1 "$SETS256"); do sets+=("256 $VIEWS256 $((300 + k)) $((300000 + 1000 * k))"); done
for k in $(seq 1 "$SETS512"); do sets+=("512 $VIEWS512 $((400 + k)) $((400000 + 1000 * k))"); done
table="$OUT/table.md"
echo "| set | tone | 1 slope | 2 stride | 4 nodules per location | 5 new blobs | 7 anatomy | dxr passes | second implementation |" > "$table"
echo "|---|---|---|---|---|---|---|---|---|" >> "$table"
for s in "${sets[@]}"; do
  read -r size views seed first <<< "$s"
  set_dir="$OUT/set-$size-$seed"
  [[ -f "$set_dir/coco.json" ]] || "$DXR" drr "${CT[@]}" --out "$set_dir" --count "$views" --size "$size" \
    --nodules "$NODULES" --seed "$seed" --first-index "$first" --device cpu >/dev/null
  for t in "${tones[@]}"; do
    r="$OUT/restored-$size-$seed-tone$t"
    for what in png16 clean/png16; do
      sub=views; [[ "$what" != png16 ]] && sub=clean
      [[ -d "$r/$sub" ]] || "$DXR" restore "$set_dir/$what" -o "$r/$sub" --weights "$MODEL" --seed 1 \
        --bits 16 --labels "$set_dir" --device "$DEVICE" --tone "$t" >/dev/null 2>&1
    done
    "$DXR" realism "$r/views" --before "$set_dir/png16" --labels "$set_dir" --reference "$HQ" \
      --reference-holdout 0 --clean-before "$set_dir/clean/png16" --clean-after "$r/clean" > "$r/checks.md"
    confirm="–"
    if [[ "$CONFIRM" == 1 ]]; then
      if scripts/confirm-checks.sh --before "$set_dir/png16" --after "$r/views" --labels "$set_dir" \
        --clean-before "$set_dir/clean/png16" --clean-after "$r/clean" --reference "$HQ" \
        --json "$r/confirm.json" > "$r/confirm.md" 2>&1; then confirm="all 5 pass"; else
        confirm="$(grep -o '[0-9] of [0-9] checks pass' "$r/confirm.md" || echo error)"; fi
    fi
    cell() { awk -F'|' -v k="$1" '$2 ~ "^ "k" " {gsub(/^ +| +$/, "", $4); gsub(/^ +| +$/, "", $6); print $4 " (" $6 ")"}' "$r/checks.md"; }
    printf '| %s² seed %s (%s views) | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$size" "$seed" "$views" "$t" \
      "$(cell 1)" "$(cell 2)" "$(cell 4)" "$(cell 5)" "$(cell 7)" \
      "$(grep -o '[0-9] of [0-9] checks pass' "$r/checks.md")" "$confirm" >> "$table"
  done
done
cat "$table"
