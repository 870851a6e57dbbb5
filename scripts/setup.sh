#!/usr/bin/env bash
# Installs what the build and the tests need on a fresh Debian machine with only Rust:
# the wasm32 target, Mesa's Vulkan driver so that wgpu finds an adapter without a GPU, and cmake
# (with the machine's g++) for CharLS, the JPEG-LS decoder built from source; OpenJPEG's
# opj_compress, with which tests/dicom.rs writes a JPEG 2000 CT series (we only decode J2K).
set -euo pipefail
if ! rustup target list --installed 2>/dev/null | grep -q wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi
need=()
dpkg -s mesa-vulkan-drivers >/dev/null 2>&1 || need+=(mesa-vulkan-drivers)
dpkg -s libvulkan1 >/dev/null 2>&1 || need+=(libvulkan1)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v opj_compress >/dev/null 2>&1 || need+=(libopenjp2-tools)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
