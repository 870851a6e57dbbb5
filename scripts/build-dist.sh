#!/usr/bin/env bash
# `make dist`: the page as a static site in dist/ (or $DXR_DIST_OUT), for any static server, under
# any path: index.html, the page's modules, the wasm engine, the default model, the examples, the
# studio's example CT when it was fetched, the service worker that keeps a copy for offline use,
# and `_headers` (the common static-host format) with the Content-Security-Policy that
# scripts/serve.py sends. Nothing else of the repository. Run scripts/build-web.sh first (`make
# dist` does).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${DXR_DIST_OUT:-dist}"
for need in www/pkg/dxr_bg.wasm www/pkg/dxr.js www/models/default.safetensors www/examples/index.json; do
  [[ -f "$need" ]] || { echo "build-dist: $need is missing: run scripts/build-web.sh first" >&2; exit 2; }
done
partial="$out.partial"
rm -rf "$partial" && mkdir -p "$partial/www"
cp index.html sw.js "$partial/"
cp www/*.js www/style.css "$partial/www/"
cp -r www/pkg www/models www/examples "$partial/www/"
rm -f "$partial/www/pkg/sizes.json" "$partial/www/pkg/package.json" "$partial/www/pkg/.gitignore"
if [[ -f data/ct/cxr.nii.gz ]]; then mkdir -p "$partial/data/ct" && cp data/ct/cxr.nii.gz "$partial/data/ct/"; fi

python3 - "$partial" <<'PY'
import hashlib, json, os, re, sys
sys.path.insert(0, "scripts")
from serve import CSP

out = sys.argv[1]
# the offline copy: every file but the model's bytes (the page caches those by their SHA-256)
# and the studio's example CT (fetched only when asked for); one version for all of them
files = []
for base, _, names in os.walk(out):
    for n in names:
        rel = os.path.relpath(os.path.join(base, n), out).replace(os.sep, "/")
        if rel in ("sw.js", "_headers") or rel.endswith(".safetensors") or rel.startswith("data/"):
            continue
        files.append(rel)
files.sort()
h = hashlib.sha256()
for rel in files:
    h.update(rel.encode() + b"\0" + hashlib.sha256(open(os.path.join(out, rel), "rb").read()).digest())
version = h.hexdigest()[:16]

sw = open(os.path.join(out, "sw.js")).read()
sw, n1 = re.subn(r"^const VERSION = .*$", f"const VERSION = '{version}';", sw, flags=re.M)
sw, n2 = re.subn(r"^const FILES = .*$", f"const FILES = {json.dumps(files)};", sw, flags=re.M)
assert n1 == 1 and n2 == 1, "sw.js lost its VERSION or FILES line"
open(os.path.join(out, "sw.js"), "w").write(sw)

# index.html: the offline copy switched on, and the policy as a <meta> for hosts that send no
# headers (frame-ancestors only works as a header: a <meta> would log an error for it)
meta_csp = "; ".join(d for d in CSP.split("; ") if not d.startswith("frame-ancestors"))
html = open(os.path.join(out, "index.html")).read()
html = html.replace('<html lang="en">', '<html lang="en" data-offline="on">', 1)
html = html.replace('<meta charset="utf-8">',
                    f'<meta charset="utf-8">\n  <meta http-equiv="Content-Security-Policy" content="{meta_csp}">', 1)
assert 'data-offline="on"' in html and "Content-Security-Policy" in html, "index.html changed shape"
open(os.path.join(out, "index.html"), "w").write(html)

open(os.path.join(out, "_headers"), "w").write(
    "/*\n"
    f"  Content-Security-Policy: {CSP}\n"
    "  X-Content-Type-Options: nosniff\n"
    "  Referrer-Policy: no-referrer\n"
    "/*.wasm\n"
    "  Content-Type: application/wasm\n")
print(f"dist: {len(files)} files in the offline copy, version {version}")
PY
rm -rf "$out" && mv "$partial" "$out"
du -sh "$out" | awk '{print "dist: " $1 " in " "'"$out"'"}'
