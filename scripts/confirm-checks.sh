#!/usr/bin/env bash
# An independent second implementation of the restoration checks (`dxr realism --before`), in
# Python, to confirm the Rust figures: sets up its own venv with pinned packages, then runs
# scripts/confirm_checks.py with the arguments given (see its --help; --self-test tests it).
#
#   scripts/confirm-checks.sh --before DRRS --after RESTORED --labels SET \
#       --clean-before SET/clean/png16 --clean-after RESTORED_CLEAN --reference REAL.png --json out.json
#
# Exit status: the script's (0 all pass, 1 a check fails, 2 bad input); 3 when the venv cannot
# be set up. DXR_CONFIRM_VENV picks the venv's folder; PYTHON the interpreter that creates it.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${DXR_CONFIRM_VENV:-$HOME/.cache/dxr-confirm-venv}"
# pinned by name and version (PyPI wheels for CPython 3.11), never by URL
pins=(numpy==2.1.3 scipy==1.14.1 scikit-image==0.24.0 pillow==11.0.0)
stamp="$venv/.dxr-confirm-pins"

if [[ ! -x "$venv/bin/python" || "$(cat "$stamp" 2>/dev/null || true)" != "${pins[*]}" ]]; then
    py="${PYTHON:-$(command -v python3.11 || command -v python3 || true)}"
    if [[ -z "$py" ]]; then
        echo "confirm-checks: no python3.11 or python3 to create $venv with" >&2
        exit 3
    fi
    echo "confirm-checks: setting up $venv (${pins[*]})" >&2
    # a venv from an earlier pin set is rebuilt rather than patched
    if ! { "$py" -m venv --clear "$venv" \
        && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --only-binary=:all: "${pins[@]}"; } >&2; then
        echo "confirm-checks: could not set up $venv" >&2
        exit 3
    fi
    echo "${pins[*]}" > "$stamp"
fi

exec "$venv/bin/python" "$here/confirm_checks.py" "$@"
