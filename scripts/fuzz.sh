#!/usr/bin/env bash
# Fuzzes every reader of user bytes (fuzz/fuzz_targets, see fuzz/checks.rs) with libFuzzer.
# Needs the nightly toolchain and cargo-fuzz (installed here if missing). Not part of `make test`:
# `make test` replays what this saves (tests/fuzz-regressions/) on stable.
#
#   scripts/fuzz.sh                      every target, 30 min each, one at a time
#   TARGETS="image json" SECONDS_EACH=60 JOBS=2 scripts/fuzz.sh
#
# Per target: the corpus lives in fuzz/corpus/<target> (git-ignored; seeded from small valid files
# of each format: written by `tests/fuzz_replay.rs::write_fuzz_seeds` and fuzz/seeds/), findings
# (crash, timeout, out of memory) are copied to tests/fuzz-regressions/<target>/, and the last
# stats line (executions, coverage, corpus) is printed. libFuzzer runs in fork mode and goes on
# after a finding. The build is cargo-fuzz's default: AddressSanitizer (for the unsafe code in
# the decoders we depend on), coverage instrumentation and debug assertions (overflow checks).
set -euo pipefail
cd "$(dirname "$0")/.."
TARGETS=${TARGETS:-"image dicom checkpoint pickle nifti json load_model"}
SECONDS_EACH=${SECONDS_EACH:-1800}
JOBS=${JOBS:-1}
# corpus files kept per run (0 by default: a corpus grown from seeds that packages ship, such
# as pydicom-data's, holds their data, which is fetched at setup and never committed)
KEEP_CORPUS=${KEEP_CORPUS:-0}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/dxr-fuzz-target}

rustup toolchain list | grep -q '^nightly' || { echo "fuzz.sh: the nightly toolchain is needed" >&2; exit 2; }
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked

# 1. build the targets asked for (instrumented, release with debug assertions)
for t in $TARGETS; do
    ( cd fuzz && CARGO_TARGET_DIR=$FUZZ_TARGET_DIR cargo +nightly fuzz build "$t" )
done

# 2. seeds
seeds=fuzz/corpus-seeds
rm -rf "$seeds" && mkdir -p "$seeds"
# (the stable build shares the project's target folder, as `make` does)
DXR_FUZZ_SEEDS=$PWD/$seeds CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dxr-target} \
    cargo test --release --test fuzz_replay -- --ignored write_fuzz_seeds >/dev/null
cp -r fuzz/seeds/. "$seeds"/
# the compressed DICOM test files (JPEG 2000, JPEG-LS, RLE) where scripts/fetch-data.sh fetched them
mkdir -p "$seeds/dicom"
find data/dicom -name '*.dcm' -size -64k -exec cp {} "$seeds/dicom/" \; 2>/dev/null || true

# 3. run
run_one() {
    local t=$1 bin
    bin=$(ls "$FUZZ_TARGET_DIR"/x86_64-unknown-linux-gnu/release/"$t")
    mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t" "fuzz/logs" "$seeds/$t"
    "$bin" "fuzz/corpus/$t" "$seeds/$t" \
        -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -artifact_prefix="fuzz/artifacts/$t/" >"fuzz/logs/$t.log" 2>&1 || true
    local found=0
    for f in fuzz/artifacts/"$t"/{crash,timeout,oom,leak}-*; do
        [ -e "$f" ] || continue
        mkdir -p "tests/fuzz-regressions/$t"
        cp "$f" "tests/fuzz-regressions/$t/"
        found=$((found + 1))
    done
    # a sample of the minimised corpus joins the replayed regressions (up to KEEP_CORPUS files of
    # at most 16 KiB, those naming a compressed transfer syntax first): what the fuzzer learned to
    # reach, replayed by `make test` from then on
    local min; min=$(mktemp -d)
    "$bin" -merge=1 "$min" "fuzz/corpus/$t" >/dev/null 2>&1 || true
    local kept=0
    mkdir -p "tests/fuzz-regressions/$t"
    [ "$KEEP_CORPUS" -gt 0 ] && for f in $( (grep -l -a '1\.2\.840\.10008\.1\.2\.4\.' "$min"/* 2>/dev/null; ls "$min"/* 2>/dev/null) | awk '!seen[$0]++'); do
        [ "$kept" -ge "$KEEP_CORPUS" ] && break
        [ "$(stat -c %s "$f")" -le 16384 ] || continue
        cp "$f" "tests/fuzz-regressions/$t/corpus-$(basename "$f")"
        kept=$((kept + 1))
    done
    rm -rf "$min"
    local last
    last=$(grep -E '^#[0-9]+:' "fuzz/logs/$t.log" | tail -1)
    echo "$t: ${SECONDS_EACH}s, $last, findings saved: $found, corpus files kept: $kept"
}
export -f run_one
export FUZZ_TARGET_DIR SECONDS_EACH seeds KEEP_CORPUS
echo "fuzzing $TARGETS, ${SECONDS_EACH}s each, $JOBS at a time"
printf '%s\n' $TARGETS | xargs -P "$JOBS" -I{} bash -c 'run_one {}'
