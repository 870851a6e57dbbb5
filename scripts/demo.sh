#!/usr/bin/env bash
# CLI restoration demo: makes a small synthetic chest-like image, restores it with the cheff
# fixture checkpoint, and prints where the result is.
set -euo pipefail
dxr="$1"; shared="$2"
case_dir="$shared/fixtures/cheff/small"
out="${DXR_DEMO_OUT:-/tmp/dxr-demo}"
mkdir -p "$out/in"
python3 - "$out/in/synthetic.png" <<'PY'
import sys, zlib, struct, math
w = h = 128
rows = []
for y in range(h):
    row = bytearray([0])
    for x in range(w):
        r = math.hypot((x - 40) / 28, (y - 64) / 45)
        l = math.hypot((x - 88) / 28, (y - 64) / 45)
        v = 200 - 120 * max(0, 1 - min(r, l)) + 20 * math.sin(y / 4)
        row.append(max(0, min(255, int(v))))
    rows.append(bytes(row))
raw = zlib.compress(b"".join(rows))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")
open(sys.argv[1], "wb").write(png)
PY
"$dxr" info "$case_dir/weights.pt" --config "$case_dir/config.json"
"$dxr" restore "$out/in/synthetic.png" -o "$out/restored" --weights "$case_dir/weights.pt" \
  --config "$case_dir/config.json" --sampler dpmpp --steps 10 --seed 1
echo "restored image: $out/restored/synthetic.png (the web app arrives with the browser issue)"
