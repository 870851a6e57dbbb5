#!/usr/bin/env bash
# Where the time goes on the CPU backend: perf samples (with call stacks) of one restoration
# step and of DDPM-HQ training steps of the default model on flex, summarised per kind of work
# by scripts/profile-table.py. Folded stacks for a flame graph go to out/profile/*.folded.
# Needs perf (Debian linux-perf). DXR: the binary; DEVICE [flex]; SIZE [256].
set -euo pipefail
cd "$(dirname "$0")/.."
: "${CARGO_TARGET_DIR:=$HOME/.cache/dxr-target}"
DXR=${DXR:-$CARGO_TARGET_DIR/release/dxr}
DEVICE=${DEVICE:-flex}
SIZE=${SIZE:-256}
command -v perf >/dev/null || { echo "profile: perf is not installed (apt-get install linux-perf)" >&2; exit 2; }
mkdir -p out/profile
run() { # file name, title, dxr arguments...
  local name=$1 title=$2; shift 2
  perf record -q -F 199 --call-graph dwarf,16384 -o "out/profile/$name.data" -- "$DXR" "$@" >/dev/null 2>&1
  perf script --no-inline -i "out/profile/$name.data" 2>/dev/null > "out/profile/$name.txt"
  python3 scripts/profile-table.py --title "$title" --folded "out/profile/$name.folded" < "out/profile/$name.txt"
  rm -f "out/profile/$name.data"
}
run restore "restoration step ${SIZE}² ($DEVICE)" bench --device "$DEVICE" --size "$SIZE" --runs 5 --train-batch 0 --config models/default.safetensors
echo
run train "training step b4 64² ($DEVICE)" bench --device "$DEVICE" --size 32 --runs 1 --train-steps 20 --config models/default.safetensors
