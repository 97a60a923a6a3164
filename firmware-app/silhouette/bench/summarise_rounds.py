"""Reads the rounds `compare_mog2.sh` printed for one frame size and prints the median over rounds of
our time per frame in each condition and of MOG2's time per frame on 1 and 2 threads."""

import re
import statistics
import sys


def main() -> None:
    ours: dict[str, list[float]] = {}
    mog2: dict[str, list[float]] = {}
    for line in sys.stdin:
        threads = re.search(r"MOG2 alone, \S+, (\d+) thread\(s\): ([\d.]+) ms/frame", line)
        if threads:
            mog2.setdefault(threads.group(1), []).append(float(threads.group(2)))
            continue
        fields = line.split()
        if len(fields) >= 6 and not line.startswith(("condition", "--")):
            ours.setdefault(fields[0], []).append(float(fields[5]))
    print(f"median of {len(next(iter(ours.values()), []))} rounds, ms/frame:")
    for name, times in ours.items():
        print(f"  ours, {name:<9} {statistics.median(times):.2f}   (rounds: {times})")
    for threads, times in sorted(mog2.items()):
        print(f"  MOG2, {threads} thread(s) {statistics.median(times):.2f}   (rounds: {times})")


if __name__ == "__main__":
    main()
