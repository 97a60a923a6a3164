"""Draws a soak's health from the samples `kiosk-soak` wrote (one row a minute) as one PNG: resident
memory, frames per second, windows dropped and in flight, decision latency, and the event queues.

    python3 firmware-app/kiosk-demo/plot_soak.py kiosk-soak/samples.csv --out firmware-app/kiosk-demo/soak.png

Needs matplotlib (`pip install matplotlib`); the soak itself does not.
"""

import argparse
import csv
from pathlib import Path


def read_samples(path):
    """The rows of a samples file, numbers as floats (an empty cell, a figure the system did not
    give, as None)."""
    with Path(path).open(newline="") as file:
        return [
            {key: float(value) if value != "" else None for key, value in row.items()}
            for row in csv.DictReader(file)
        ]


def plot(rows, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    minutes = [r["uptime_s"] / 60 for r in rows]
    figure, axes = plt.subplots(1, 5, figsize=(20, 4))
    memory, rate, windows, latency, queues = axes
    resident = [(r["resident_kib"] or 0) / 1024 for r in rows]
    memory.plot(minutes, resident)
    memory.set_title("resident memory (MiB)")
    # Headroom above the largest value: a flat line would otherwise sit on the frame's top edge.
    memory.set_ylim(0, 1.2 * max(resident))
    rate.plot(minutes, [r["frames_per_second"] for r in rows])
    rate.set_title("frames per second")
    # Headroom above the steady rate, which would otherwise lie on the frame of the plot.
    rate.set_ylim(0, 1.2 * max(r["frames_per_second"] for r in rows))
    windows.plot(minutes, [r["windows_dropped"] for r in rows], label="dropped (total)")
    windows.plot(minutes, [r["windows_in_flight"] for r in rows], label="in flight")
    windows.set_title("windows")
    windows.legend()
    latency.plot(minutes, [r["recent_median_latency_ms"] for r in rows])
    latency.set_title("median decision latency (ms)")
    latency.set_ylim(bottom=0)
    queues.plot(minutes, [r["pending_events"] for r in rows], label="pending in sinks")
    queues.plot(minutes, [r["sink_backlog"] for r in rows], label="MQTT queue")
    queues.plot(minutes, [r["events_dropped"] for r in rows], label="dropped (total)")
    queues.set_title("events")
    queues.legend()
    for axis in axes:
        axis.set_xlabel("minute")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="kiosk soak")
    args = parser.parse_args(argv)
    plot(read_samples(args.samples), args.out, args.title)


if __name__ == "__main__":
    main()
