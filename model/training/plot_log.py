"""Draws a training run's curves from its log.jsonl: the losses, the share of active triplets and the
held-out rank-1 (NM/BG/CL) against iterations, as one PNG.

    python3 model/training/plot_log.py runs/compact/log.jsonl --out model/training/curves.png

Needs matplotlib (`pip install matplotlib`); training itself does not.
"""

import argparse
import json
from pathlib import Path


def read_log(path):
    """The records of a log, one per logged iteration; a later record of an iteration (a resumed run
    repeating it) replaces the earlier one."""
    records = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            records[record["iteration"]] = record
    return [records[i] for i in sorted(records)]


def plot(records, out, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iterations = [r["iteration"] for r in records]
    figure, (losses, triplets, rank1) = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label in (("loss", "total"), ("cross_entropy", "cross-entropy"), ("triplet", "triplet")):
        losses.plot(iterations, [r[key] for r in records], label=label)
    losses.set_title("training loss")
    losses.set_xlabel("iteration")
    losses.legend()
    triplets.plot(iterations, [100 * r["active_triplets"] for r in records], color="tab:purple")
    triplets.set_title("active triplets (%)")
    triplets.set_xlabel("iteration")
    validated = [r for r in records if "validation" in r]
    for condition in ("NM", "BG", "CL"):
        rank1.plot(
            [r["iteration"] for r in validated],
            [r["validation"][condition] for r in validated],
            marker="o",
            label=condition,
        )
    rank1.set_title("rank-1 of the held-out subjects 065-074 (%)")
    rank1.set_xlabel("iteration")
    rank1.set_ylim(0, 100)
    rank1.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("log")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="compact HSTL on CASIA-B 001-064, CPU")
    args = parser.parse_args(argv)
    records = read_log(args.log)
    if not records:
        raise SystemExit(f"{args.log} holds no records")
    plot(records, args.out, args.title)
    print(f"{len(records)} records, up to iteration {records[-1]['iteration']}, drawn in {args.out}")


if __name__ == "__main__":
    main()
