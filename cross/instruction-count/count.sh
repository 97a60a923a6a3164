#!/usr/bin/env bash
# Instructions the network executes per 30-frame window, on aarch64 and on x86-64, counted under
# qemu-user by our plugin (insn_count.c): a proxy for the work an ARM board does until one is measured.
#
#   cross/instruction-count/count.sh            # f32 and int8 on both architectures, one thread
#
# Each count is `hstl bench` with 6 timed windows minus the same with 1, divided by 5, so that loading
# the model, planning and the warm-up window cancel. Both architectures run the release build under
# qemu's `max` CPU (aarch64: NEON and SDOT; x86-64: AVX2 and FMA), so each takes the kernels tract
# and our int8 convolution pick for such a CPU. f16 is left out: qemu computes FP16 arithmetic in
# software (over 15 minutes for two windows), and the door does not stream f16.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/instruction-count
mkdir -p "$out"
plugin=$out/libinsn_count.so
gcc -O2 -shared -fPIC -Wall -Wextra -o "$plugin" cross/instruction-count/insn_count.c
cargo build --release -p hstl-cli --target aarch64-unknown-linux-gnu
cargo build --release -p hstl-cli

# guest_instructions ARCH BENCH_ARGS...: what one `hstl bench` run of that architecture's build executed.
guest_instructions() {
    local arch=$1
    shift
    local run=(qemu-x86_64 -cpu max -plugin "$plugin" target/release/hstl)
    if [[ $arch == aarch64 ]]; then
        run=(qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max -plugin "$plugin"
            target/aarch64-unknown-linux-gnu/release/hstl)
    fi
    "${run[@]}" bench --threads 1 "$@" 2>&1 >/dev/null | sed -n 's/^guest instructions: //p'
}

per_window() {
    local one six
    one=$(guest_instructions "$@" --runs 1)
    six=$(guest_instructions "$@" --runs 6)
    echo $(((six - one) / 5))
}

f32=model/weights/hstl-compact-casia-b.onnx
int8=model/weights/hstl-compact-casia-b.int8.onnx
printf '%-8s %-6s %s\n' arch model "instructions per window"
for arch in aarch64 x86_64; do
    printf '%-8s %-6s %s\n' "$arch" f32 "$(per_window "$arch" --model "$f32")"
    printf '%-8s %-6s %s\n' "$arch" int8 "$(per_window "$arch" --model "$int8")"
done
