#!/usr/bin/env bash
# Builds the network's and the kiosk's tests for aarch64 and runs them under qemu-user (runner set in
# .cargo/config.toml).
#
# Emulation runs tract's NEON kernels about 500x slower than native, so this runs the unit tests,
# the checkpoint test and the 8-frame parity test (every stage of the network against the reference
# vectors, through the ARM kernels); the 33-frame parity, the CLI and the multi-variant tests run
# natively in the main test run. The int8 convolution's unit tests reach every arm64 int8 kernel
# tract-linalg offers the emulated CPU, and the f16 test (aarch64 only) its half-precision kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(dirname "$0")/setup-aarch64.sh"
# One command over the whole workspace, so that tract is cross-compiled once: every library's unit
# tests (the kiosk's own code on ARM: gallery with bundled SQLite and encryption, decisions,
# silhouettes, events, the relay, the MQTT queue and the framebuffer conversion) and the parity test.
# The streamed walks of `walk-embedding` (a network run per window and per prefix: 7 min emulated)
# run natively; on ARM the stages they stream are those the parity test checks.
cargo test --workspace --features firmware-app/gpio,firmware-app/osdp,firmware-app/mqtt,firmware-app/fb \
    --target aarch64-unknown-linux-gnu --lib --test parity -- \
    --skip 33_frames --skip reference_distance --skip a_walk_so_far --skip a_walk_is_shown --skip a_hole_in_the_walk
