#!/usr/bin/env bash
# Installs what building for aarch64-unknown-linux-gnu without Docker needs: Debian's cross gcc
# (linker and C/assembly for tract's ARM kernels), the arm64 C library, and qemu-user to run tests.
set -euo pipefail
if ! command -v aarch64-linux-gnu-gcc >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
    apt-get update
    apt-get install -y --no-install-recommends gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
fi
rustup target add aarch64-unknown-linux-gnu
