#!/usr/bin/env bash
# Builds the web app: the crate for wasm32 (wasm-bindgen glue into www/pkg) and the default
# model into www/models. Installs the wasm-bindgen CLI that matches Cargo.lock when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/dxr-target}"
export CARGO_TARGET_DIR
shared="${SHARED:-$PWD/../shared}"

cargo build --release --lib --no-default-features --target wasm32-unknown-unknown
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/, ""); print; exit}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (found '${have:-none}')"
  cargo install wasm-bindgen-cli --version "$want" --locked || cargo install wasm-bindgen-cli --version "$want"
fi
rm -rf www/pkg
wasm-bindgen --target web --no-typescript --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/dxr.wasm"

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
echo "web app built: www/pkg, www/models"
