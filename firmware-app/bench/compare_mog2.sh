#!/usr/bin/env bash
# Our silhouette stage against OpenCV's MOG2 on the same synthetic frames with the same clean-up:
# F-measure per condition and time per frame, at 640x480 and 320x240.
# Needs: python3 with opencv-python-headless and numpy (pip install opencv-python-headless numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p firmware-app --example silhouette_bench
bench=target/release/examples/silhouette_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for size in "640 480" "320 240"; do
    set -- $size
    dir="$work/$1x$2"
    echo "== $1x$2"
    "$bench" score "$1" "$2" --export "$dir" > /dev/null
    for threads in 1 2; do
        python3 firmware-app/bench/mog2_labels.py "$dir" "$threads"
    done
    "$bench" score "$1" "$2" --mog2 "$dir"
done
