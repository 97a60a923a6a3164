#!/usr/bin/env bash
# Release binaries for Jetson and other 64-bit ARM boards, linked against an old glibc so that one
# artefact runs on JetPack 5 (Ubuntu 20.04, glibc 2.31) and JetPack 6 (Ubuntu 22.04, glibc 2.35).
#
#   cross/release-aarch64.sh [GLIBC_VERSION ...]     # default: 2.31 2.35
#
# Debian's cross gcc links against its own glibc 2.36 and tract then needs GLIBC_2.35 (hypotf),
# which JetPack 5 lacks; cargo-zigbuild links against the requested glibc instead.
# Artefacts: target/dist/kiosk-aarch64-glibc<version>.tar.gz: bin/ (hstl, kiosk, enrol, calibrate),
# model/ (the shipped trained model in float and int8, each with its operating point, and the model
# card), etc/kiosk.toml,
# systemd/kiosk.service.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -eq 0 ]]; then
    set -- 2.31 2.35
fi

command -v cargo-zigbuild >/dev/null || python3 -m pip install --quiet cargo-zigbuild
rustup target add aarch64-unknown-linux-gnu
mkdir -p target/dist
# The kiosk as a door installs it: every output, and ONNX Runtime for the Jetson's GPU.
KIOSK_FEATURES=hstl-cli/ort,kiosk-cli/ort,kiosk-cli/camera,kiosk-cli/gpio,kiosk-cli/osdp,kiosk-cli/mqtt,kiosk-cli/fb
for glibc in "$@"; do
    target="aarch64-unknown-linux-gnu.${glibc}"
    cargo zigbuild --release -p hstl-cli -p kiosk-cli -p calibrate --features "$KIOSK_FEATURES" \
        --target "$target"
    stage=target/dist/kiosk-aarch64-glibc${glibc}
    rm -rf "$stage" && mkdir -p "$stage/bin" "$stage/model" "$stage/etc" "$stage/systemd"
    for binary in hstl kiosk enrol calibrate; do
        path=target/aarch64-unknown-linux-gnu/release/$binary
        newest=$(objdump -T "$path" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
        echo "$binary for glibc ${glibc}: needs at most ${newest}"
        cp "$path" "$stage/bin/"
    done
    for model in hstl-compact-casia-b.onnx hstl-compact-casia-b.int8.onnx; do
        cp "model/weights/$model" "model/weights/$model.operating-point.json" "$stage/model/"
    done
    cp model/weights/README.md "$stage/model/"
    cp cross/package/kiosk.toml "$stage/etc/"
    cp cross/package/kiosk.service "$stage/systemd/"
    cp README.md "$stage/"
    tar -C target/dist -czf "${stage}.tar.gz" "$(basename "$stage")"
done
