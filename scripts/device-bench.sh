#!/usr/bin/env bash
# The GPU path, measured, on a machine with a GPU and none of our toolchain: a prebuilt `dxr`
# (and, where the machine lacks it, the Vulkan loader from Debian packages unpacked beside it)
# times on wgpu:
#   1. one UNet step at 256² and 1024², the `small` and the authors' `base` config;
#   2. a DDPM-HQ training step (fwd + bwd + Adam + EMA) at batch 4 and 12;
#   3. data-parallel training over two logical devices on the one GPU (`--devices wgpu:0,wgpu:1`)
#      against one device, at batch 12 (what the split costs; one GPU gains nothing from it);
#   4. the same training step in mixed precision (f16 compute, f32 master weights);
#   5. a whole 1024² restoration with the default model and the default sampler.
# With DXR_REFERENCE (a copy of qureai/DiffusionXray) and a python with torch (DXR_PYTHON), the
# same networks in PyTorch on CUDA in the same run, and the ratios. Medians after a warm-up.
#
#   DXR=path/to/dxr scripts/device-bench.sh          # the whole table (≈ 5 min on an H200)
#   QUICK=1 DXR=... scripts/device-bench.sh          # small sizes: checks the script anywhere
#
# Build the binary where the toolchain is: `cargo build --release` (it links no CUDA; wgpu
# finds the NVIDIA Vulkan driver at run time). Output: the tables on stdout and $OUT/bench.md.
set -uo pipefail

DXR=${DXR:-${CARGO_TARGET_DIR:-$HOME/.cache/dxr-target}/release/dxr}
OUT=${OUT:-/tmp/dxr-device-bench}
mkdir -p "$OUT"
[ -x "$DXR" ] || { echo "device-bench: no dxr binary at $DXR (set DXR=)" >&2; exit 2; }

if [ -n "${QUICK:-}" ]; then
    CONFIGS=(tiny small); SIZES=(64 128); BATCHES=(2 4); PATCH=32; RESTORE_SIDE=256; STEPS=2
else
    CONFIGS=(small base); SIZES=(256 1024); BATCHES=(4 12); PATCH=${PATCH:-256}; RESTORE_SIDE=1024; STEPS=5
fi

# 1. the Vulkan loader: the system's, else Debian packages carried in .gl/ (see the device notes)
if ! ldconfig -p 2>/dev/null | grep -q 'libvulkan.so.1'; then
    if compgen -G ".gl/*.deb" >/dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        echo "device-bench: no Vulkan loader (libvulkan.so.1) and no .gl/*.deb to unpack" >&2
    fi
fi
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd
fi
export DXR_TORCH_DEVICE=${DXR_TORCH_DEVICE:-$( (${DXR_PYTHON:-python3} -c \
    'import torch; print("cuda" if torch.cuda.is_available() else "cpu")') 2>/dev/null || echo cpu)}

{
    echo "# dxr on this machine's GPU ($(date -u +%F))"
    echo
    (nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null ||
        echo "no nvidia-smi") | sed 's/^/GPU: /'
    echo "CPU: $(nproc) cores; PyTorch device: $DXR_TORCH_DEVICE"
    echo
} | tee "$OUT/bench.md"

run() {
    echo "\$ dxr $*" | tee -a "$OUT/bench.md"
    "$DXR" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR | tee -a "$OUT/bench.md"
    echo | tee -a "$OUT/bench.md"
}

# 2. UNet steps and the batch-4 training step (PyTorch beside them when DXR_REFERENCE is set)
run bench --config "${CONFIGS[@]}" --size "${SIZES[@]}" --device gpu --runs "$STEPS" \
    --train-batch "${BATCHES[0]}" --train-patch "$PATCH" --train-steps "$STEPS"
# 3. the batch-12 training step (the inference rows repeat at the smallest size only)
run bench --config "${CONFIGS[@]}" --size "${SIZES[0]}" --device gpu --runs 1 \
    --train-batch "${BATCHES[1]}" --train-patch "$PATCH" --train-steps "$STEPS"
# 4. one device against two logical devices on it, the same global batch
run train-bench --config "${CONFIGS[0]}" --batch "${BATCHES[1]}" --patch "$PATCH" \
    --steps "$STEPS" --device gpu --device wgpu:0,wgpu:1
# 5. mixed precision: the batch-12 step with f16 compute (f32 master weights)
run train-bench --config "${CONFIGS[0]}" --batch "${BATCHES[1]}" --patch "$PATCH" \
    --steps "$STEPS" --device gpu --precision f16
# 6. a whole restoration of a synthetic chest-sized image
img="$OUT/synthetic-$RESTORE_SIDE.png"
python3 - "$img" "$RESTORE_SIDE" <<'PY'
import math, struct, sys, zlib
path, n = sys.argv[1], int(sys.argv[2])
rows = []
for y in range(n):
    row = bytearray([0])
    for x in range(n):
        u, v = (x - n / 2) / (n / 2), (y - n / 2) / (n / 2)
        lungs = math.exp(-((abs(u) - 0.45) ** 2 / 0.06 + v ** 2 / 0.35))
        ribs = 0.08 * math.sin(22 * v + 3 * u * u)
        row.append(max(0, min(255, int(200 - 120 * lungs + 40 * ribs * lungs))))
    rows.append(bytes(row))
def chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", n, n, 8, 0, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"".join(rows))) + chunk(b"IEND", b"")
open(path, "wb").write(png)
PY
run bench --config "${CONFIGS[0]}" --size "${SIZES[0]}" --device gpu --runs 1 --train-batch 0 \
    --restore "$img" --restore-device gpu
echo "device-bench: the tables are in $OUT/bench.md"
