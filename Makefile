# DiffusionXRay: `make serve` brings up the main job, `make test` runs every test.
# Both install what they need. Build outputs live outside the work tree so that later sessions
# and CI runs on the same machine reuse them.

CARGO_TARGET_DIR ?= $(HOME)/.cache/dxr-target
export CARGO_TARGET_DIR
PORT ?= 8080
SHARED ?= $(CURDIR)/../shared
DXR := $(CARGO_TARGET_DIR)/release/dxr

.PHONY: serve test deps build wasm-check bench

deps:
	@scripts/setup.sh

build: deps
	cargo build --release

# Until the web app lands: a CLI restoration demo on a synthetic DRR-like image with the
# fixture checkpoint (random weights: it shows the pipeline, not image quality).
serve: build
	@scripts/demo.sh "$(DXR)" "$(SHARED)"

test: deps
	cargo test --release --all-targets --no-fail-fast -- --nocapture
	$(MAKE) wasm-check

wasm-check:
	cargo check --release --lib --no-default-features --target wasm32-unknown-unknown

bench: build
	$(DXR) bench --config $(SHARED)/fixtures/cheff/small/config.json --size 256 256 --steps 5
