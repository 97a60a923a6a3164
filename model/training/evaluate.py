"""CASIA-B rank-1 of a checkpoint with the PyTorch model (the GPU counterpart of `hstl eval`).

    python3 model/training/evaluate.py --checkpoint runs/casia-b/checkpoints/hstl-90000.pt \\
        --data CASIA_B_DIR [--subjects 075-124] [--json]

Same protocol as `hstl eval`: gallery nm-01..04; probes NM (nm-05/06), BG (bg-01/02), CL (cl-01/02);
rank-1 per (probe view, gallery view) with identical views excluded, averaged over gallery views,
then over probe views. Every frame of a walk is used unless --max-frames says otherwise.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from casia_b import load_sequences, parse_subjects  # noqa: E402
from hstl_net import HSTL, part_distance, variant_of  # noqa: E402

GALLERY = ("nm-01", "nm-02", "nm-03", "nm-04")
PROBE_SETS = {"NM": ("nm-05", "nm-06"), "BG": ("bg-01", "bg-02"), "CL": ("cl-01", "cl-02")}


def load_model(path, device):
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = state["model"] if "model" in state else state
    model = HSTL(classes=weights["Head1.fc_bin"].shape[2], variant=variant_of(weights))
    model.load_state_dict(weights, strict=True)
    return model.to(device).eval()


@torch.no_grad()
def embed_walks(model, sequences, device, max_frames=None):
    embeddings = []
    for sequence in sequences:
        frames = len(sequence) if max_frames is None else min(len(sequence), max_frames)
        clip = torch.from_numpy(sequence.clip(np.arange(frames)))[None].to(device)
        embeddings.append(model(clip)[0][0].float().cpu())
    return torch.stack(embeddings)


def rank1_table(sequences, embeddings):
    """{'views': [...], set: {'per_view': [...], 'mean': m}}, accuracies in percent, None if unscored."""
    views = sorted({s.view for s in sequences})
    subjects = np.array([s.subject for s in sequences])
    conditions = np.array([s.condition for s in sequences])
    seq_views = np.array([s.view for s in sequences])
    gallery_mask = np.isin(conditions, GALLERY)
    table = {"views": views}
    for name, probe_conditions in PROBE_SETS.items():
        probe_mask = np.isin(conditions, probe_conditions)
        per_view = []
        for probe_view in views:
            accuracies = []
            probes = np.flatnonzero(probe_mask & (seq_views == probe_view))
            for gallery_view in views:
                gallery = np.flatnonzero(gallery_mask & (seq_views == gallery_view))
                if gallery_view == probe_view or len(probes) == 0 or len(gallery) == 0:
                    continue
                distance = part_distance(embeddings[probes], embeddings[gallery])
                nearest = gallery[distance.argmin(dim=1).numpy()]
                accuracies.append(100.0 * float(np.mean(subjects[nearest] == subjects[probes])))
            per_view.append(float(np.mean(accuracies)) if accuracies else None)
        scored = [a for a in per_view if a is not None]
        table[name] = {"per_view": per_view, "mean": float(np.mean(scored)) if scored else None}
    return table


def format_table(table):
    lines = ["probe " + "".join(f"{v:>7}" for v in table["views"]) + f"{'mean':>8}"]
    for name in PROBE_SETS:
        cells = "".join(f"{a:>7.1f}" if a is not None else f"{'-':>7}" for a in table[name]["per_view"])
        mean = table[name]["mean"]
        lines.append(f"{name:<6}{cells}" + (f"{mean:>8.2f}" if mean is not None else f"{'-':>8}"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--subjects", default="075-124")
    parser.add_argument("--views", default=None)
    parser.add_argument("--max-frames", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    started = time.monotonic()
    device = torch.device(args.device)
    model = load_model(args.checkpoint, device)
    sequences = load_sequences(args.data, parse_subjects(args.subjects), args.views.split(",") if args.views else None)
    embeddings = embed_walks(model, sequences, device, args.max_frames)
    table = rank1_table(sequences, embeddings)
    if args.json:
        print(json.dumps(table))
    else:
        print(format_table(table))
        print(f"{len(sequences)} walks in {time.monotonic() - started:.0f} s on {device}", file=sys.stderr)
    return table


if __name__ == "__main__":
    main()
