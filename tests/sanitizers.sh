#!/usr/bin/env bash
# The tests that reach the project's own unsafe code (UNSAFE.md), under the checker each allows:
# the matcher's AVX2 prefilter under Miri, the int8 convolution (packing and tract's int8 kernel)
# under AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup component add --toolchain nightly miri rust-src
host=$(rustc +nightly -vV | sed -n 's/^host: //p')

# Miri treats AVX2 as present only when the target enables it; without it the portable path runs.
RUSTFLAGS="-Ctarget-feature=+avx2" MIRIFLAGS="-Zmiri-strict-provenance" \
    cargo +nightly miri test -p access --lib matcher::prefilter

# --target keeps build scripts and procedural macros out of the instrumented build. The dependencies
# (tract) are built unoptimised here, unlike in the workspace's test profile: the convolution tests
# are small, and optimising an instrumented tract took 5 minutes more than the tests save.
RUSTFLAGS="-Zsanitizer=address" ASAN_OPTIONS="detect_leaks=1" \
    cargo +nightly test --config 'profile.dev.package."*".opt-level=0' \
    --config 'profile.test.package."*".opt-level=0' -p hstl --lib --target "$host" int8_convolution
