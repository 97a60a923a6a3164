#!/usr/bin/env bash
# Our silhouette stage against OpenCV's MOG2 on the same synthetic frames with the same clean-up:
# F-measure per condition and time per frame, at 640x480 and 320x240.
# Timings on a shared machine drift from minute to minute, so ours and MOG2 are timed in turn,
# ROUNDS times (default 3), and the summary gives each one's median over the rounds.
# Needs: python3 with opencv-python-headless and numpy (pip install opencv-python-headless numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-3}
cargo build --release -p silhouette --example silhouette_bench
bench=target/release/examples/silhouette_bench
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for size in "640 480" "320 240"; do
    set -- $size
    dir="$work/$1x$2"
    log="$work/$1x$2.log"
    echo "== $1x$2"
    "$bench" score "$1" "$2" --export "$dir" > /dev/null
    for round in $(seq "$rounds"); do
        echo "-- round $round" | tee -a "$log"
        for threads in 1 2; do
            python3 firmware-app/silhouette/bench/mog2_labels.py "$dir" "$threads" | tee -a "$log"
        done
        "$bench" score "$1" "$2" --mog2 "$dir" | tee -a "$log"
    done
    python3 firmware-app/silhouette/bench/summarise_rounds.py < "$log"
done
