#!/usr/bin/env bash
# tract against ONNX Runtime (CPU execution provider) on the same HSTL ONNX file, 1 and 2 threads,
# one process per configuration so that each peak RSS is its own. Prints a Markdown table.
#
#   model/bench/compare.sh [CHECKPOINT.pt]       # default: a seeded CASIA-B model
#
# Needs python3 with pip (for the onnxruntime wheel that provides libonnxruntime).
# Environment: FRAMES (default 30), RUNS (default 5), ORT_VERSION (default 1.32.0).
set -euo pipefail
cd "$(dirname "$0")/../.."

frames=${FRAMES:-30}
runs=${RUNS:-5}
ort_version=${ORT_VERSION:-1.32.0}
out=target/bench
mkdir -p "$out"

if ! python3 -c "import onnxruntime" 2>/dev/null; then
    python3 -m pip install --quiet "onnxruntime==${ort_version}"
fi
ORT_DYLIB_PATH=$(python3 -c "import glob, os, onnxruntime; print(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*'))[0])")
export ORT_DYLIB_PATH

cargo build --release --quiet -p hstl --features ort
hstl=target/release/hstl
model="$out/hstl_casiab.onnx"
if [[ $# -ge 1 ]]; then
    "$hstl" export --checkpoint "$1" --out "$model" >/dev/null
else
    "$hstl" init --variant casia-b --seed 7 --out "$model" >/dev/null
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "model: $model (${1:-seeded}), $frames frames, median of $runs runs after one warm-up"
echo
echo "| runtime | threads | median ms/window | min ms | peak RSS MiB |"
echo "|---|---|---|---|---|"
for threads in 1 2; do
    for backend in tract ort; do
        RUST_LOG=warn "$hstl" bench --model "$model" --frames "$frames" --runs "$runs" \
            --threads "$threads" --backend "$backend" --json |
            python3 -c "import json, sys; r = json.loads(sys.stdin.read()); print(f\"| {'tract' if r['backend'] == 'Tract' else 'ONNX Runtime ${ort_version} (CPU EP)'} | {r['threads']} | {r['median_ms']:.0f} | {r['min_ms']:.0f} | {r['peak_rss_mib']:.0f} |\")"
    done
done
