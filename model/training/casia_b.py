"""CASIA-B silhouettes for training and evaluation.

Two layouts are read:
- the bit-packed archive: one `casia-b_SSS.npz` per subject, key `SSS_COND_VVV` holding
  uint8 [T, 64, 8] = numpy.packbits(silhouette >= 128, axis=-1);
- OpenGait's pretreated tree: `SSS/COND/VVV/*.pkl`, each a pickled uint8 [T, 64, 64].

Sequences stay in their stored form (bit-packed: 46 MB for subjects 001-074) and are expanded
to float frames only when a clip is drawn.
"""

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME_SIZE = 64
# The reference transform cuts 10 columns from each side of the 64-wide frames.
SIDE_CUT = 10
PACKED_KEY = re.compile(r"^(\d{3})_((?:nm|bg|cl)-\d{2})_(\d{3})$")


@dataclass
class Sequence:
    subject: str
    condition: str
    view: str
    frames: np.ndarray
    packed: bool

    def __len__(self):
        return self.frames.shape[0]

    def clip(self, indices):
        """Frames at `indices` as float32 [len, 64, 44] in [0, 1]."""
        selected = self.frames[indices]
        if self.packed:
            binary = np.unpackbits(selected, axis=-1)[..., :FRAME_SIZE]
            frames = binary.astype(np.float32)
        else:
            frames = selected.astype(np.float32) / 255.0
        return frames[:, :, SIDE_CUT : FRAME_SIZE - SIDE_CUT]

    def all_frames(self):
        return self.clip(np.arange(len(self)))


def parse_subjects(spec):
    """'001-074' or '075,080,090-092' -> ['001', ..., '074']."""
    subjects = []
    for part in spec.split(","):
        if "-" in part:
            first, last = part.split("-")
            subjects.extend(f"{n:03d}" for n in range(int(first), int(last) + 1))
        else:
            subjects.append(f"{int(part):03d}")
    return subjects


def load_sequences(root, subjects, views=None):
    """Every walk of `subjects` (optionally only `views`) found under `root`, in a stable order."""
    root = Path(root)
    wanted_views = set(views) if views else None
    sequences = []
    for subject in subjects:
        packed_file = root / f"casia-b_{subject}.npz"
        if packed_file.exists():
            found = _packed_subject(packed_file, subject)
        elif (root / subject).is_dir():
            found = _opengait_subject(root / subject, subject)
        else:
            raise FileNotFoundError(f"subject {subject}: neither {packed_file} nor {root / subject} exists")
        sequences.extend(s for s in found if wanted_views is None or s.view in wanted_views)
    if not sequences:
        raise ValueError(f"no sequences for subjects {subjects[0]}..{subjects[-1]} under {root}")
    return sequences


def _packed_subject(path, subject):
    sequences = []
    with np.load(path) as archive:
        for key in sorted(archive.files):
            match = PACKED_KEY.match(key)
            if match is None or match.group(1) != subject:
                raise ValueError(f"{path}: unexpected key {key!r}")
            frames = archive[key]
            if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE // 8):
                raise ValueError(f"{path}: {key} has shape {frames.shape} {frames.dtype}, expected uint8 [T,64,8]")
            if frames.shape[0] > 0:
                sequences.append(Sequence(subject, match.group(2), match.group(3), frames, packed=True))
    return sequences


def _opengait_subject(directory, subject):
    sequences = []
    for condition_dir in sorted(p for p in directory.iterdir() if p.is_dir()):
        for view_dir in sorted(p for p in condition_dir.iterdir() if p.is_dir()):
            pickles = sorted(view_dir.glob("*.pkl"))
            if not pickles:
                continue
            with open(pickles[0], "rb") as f:
                frames = np.asarray(pickle.load(f))
            if frames.dtype != np.uint8 or frames.ndim != 3 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE):
                raise ValueError(f"{pickles[0]}: shape {frames.shape} {frames.dtype}, expected uint8 [T,64,64]")
            if frames.shape[0] > 0:
                sequences.append(Sequence(subject, condition_dir.name, view_dir.name, frames, packed=False))
    return sequences


class TripletBatches:
    """P subjects × K walks per batch, each a run of `frames` consecutive frames at a random start
    (OpenGait's triplet sampler with `fixed_ordered` clips). Walks shorter than a clip are repeated."""

    def __init__(self, sequences, p, k, frames, rng):
        self.frames = frames
        self.rng = rng
        self.by_subject = {}
        for sequence in sequences:
            self.by_subject.setdefault(sequence.subject, []).append(sequence)
        self.subjects = sorted(self.by_subject)
        if p > len(self.subjects):
            raise ValueError(f"batch needs {p} subjects, the data has {len(self.subjects)}")
        self.label_of = {s: i for i, s in enumerate(self.subjects)}
        self.p = p
        self.k = k

    def next(self):
        clips = []
        labels = []
        for subject in self.rng.choice(self.subjects, size=self.p, replace=False):
            walks = self.by_subject[subject]
            for index in self.rng.choice(len(walks), size=self.k, replace=len(walks) < self.k):
                clips.append(self._clip(walks[index]))
                labels.append(self.label_of[subject])
        return np.stack(clips), np.asarray(labels, dtype=np.int64)

    def _clip(self, sequence):
        indices = np.arange(len(sequence))
        if len(indices) < self.frames:
            indices = np.tile(indices, -(-self.frames // len(indices)))
        start = self.rng.integers(0, len(indices) - self.frames + 1)
        return sequence.clip(indices[start : start + self.frames])
