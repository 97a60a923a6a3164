#!/usr/bin/env bash
# Release binaries for Jetson and other 64-bit ARM boards, linked against an old glibc so that one
# artefact runs on JetPack 5 (Ubuntu 20.04, glibc 2.31) and JetPack 6 (Ubuntu 22.04, glibc 2.35).
#
#   cross/release-aarch64.sh [GLIBC_VERSION ...]     # default: 2.31 2.35
#
# Debian's cross gcc links against its own glibc 2.36 and tract then needs GLIBC_2.35 (hypotf),
# which JetPack 5 lacks; cargo-zigbuild links against the requested glibc instead.
# Artefacts: target/dist/hstl-aarch64-glibc<version>.tar.gz (binary + README of the model crate).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
    set -- 2.31 2.35
fi

command -v cargo-zigbuild >/dev/null || python3 -m pip install --quiet cargo-zigbuild
rustup target add aarch64-unknown-linux-gnu
mkdir -p target/dist
for glibc in "$@"; do
    cargo zigbuild --release -p hstl --features ort --target "aarch64-unknown-linux-gnu.${glibc}"
    binary=target/aarch64-unknown-linux-gnu/release/hstl
    newest=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    echo "hstl for glibc ${glibc}: needs at most ${newest}"
    stage=target/dist/hstl-aarch64-glibc${glibc}
    rm -rf "$stage" && mkdir -p "$stage"
    cp "$binary" model/README.md "$stage/"
    tar -C target/dist -czf "${stage}.tar.gz" "$(basename "$stage")"
done
