"""Augmentation of whole walks, so that the network learns what a door's camera changes and not the
one lab it was trained in.

A clip is one walk seen through one camera: every geometric change (mirror, tilt, perspective, a
static occluder) is drawn once per clip and applied to all its frames. What our own background
model does to a silhouette differs from frame to frame (ragged edges, holes, legs merged where they
cross, a shadow at the feet, a small blob re-thresholded after resizing), so that corruption is
drawn per frame. Every draw comes from the numpy generator passed in: a run is repeatable from its
seed.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

KINDS = ("flip", "affine", "erase", "corrupt")


@dataclass(frozen=True)
class Strengths:
    """How far each change goes; the defaults stay within what a door camera and our silhouette stage
    were seen to do (a few degrees of tilt, ±10 % scale, a foot-level shadow, blobs 40-80 px tall)."""

    flip: float = 0.5
    affine: float = 0.5
    rotation_degrees: float = 4.0
    scale: float = 0.10
    aspect: float = 0.08
    shear: float = 0.06
    shift: float = 0.05
    perspective: float = 0.06
    erase: float = 0.25
    erase_area: tuple = (0.02, 0.12)
    corrupt: float = 0.5


def parse_kinds(spec):
    """'flip,affine,erase,corrupt', 'all' or 'none' -> a frozenset of kinds."""
    if spec in ("", "none"):
        return frozenset()
    if spec == "all":
        return frozenset(KINDS)
    kinds = frozenset(part.strip() for part in spec.split(","))
    unknown = sorted(kinds - set(KINDS))
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}; choose from {', '.join(KINDS)}, 'all' or 'none'")
    return kinds


class WalkAugmentation:
    """Augments a batch of clips, float32 [N, T, H, W] in [0, 1], with the kinds named."""

    def __init__(self, kinds, rng, strengths=Strengths()):
        self.kinds = frozenset(kinds)
        self.rng = rng
        self.strengths = strengths

    def __call__(self, clips):
        if not self.kinds:
            return clips
        clips = np.ascontiguousarray(clips, dtype=np.float32).copy()
        s = self.strengths
        count = clips.shape[0]
        if "flip" in self.kinds:
            mirrored = self.rng.random(count) < s.flip
            clips[mirrored] = clips[mirrored][..., ::-1]
        if "affine" in self.kinds:
            warped = np.flatnonzero(self.rng.random(count) < s.affine)
            if warped.size:
                clips[warped] = self._warp(clips[warped])
        if "corrupt" in self.kinds:
            for index in np.flatnonzero(self.rng.random(count) < s.corrupt):
                clips[index] = self._corrupt(clips[index])
        if "erase" in self.kinds:
            for index in np.flatnonzero(self.rng.random(count) < s.erase):
                clips[index] = self._erase(clips[index])
        return np.clip(clips, 0.0, 1.0)

    def _warp(self, clips):
        """One projective warp per clip (rotation, scale, aspect, shear, shift, perspective), sampled
        bilinearly in normalised coordinates, the frames of a clip as its channels."""
        s = self.strengths
        homographies = np.stack([self._homography(s) for _ in range(clips.shape[0])])
        _, _, height, width = clips.shape
        ys, xs = np.meshgrid(np.linspace(-1, 1, height), np.linspace(-1, 1, width), indexing="ij")
        points = np.stack([xs, ys, np.ones_like(xs)], axis=-1).reshape(-1, 3)
        mapped = points @ homographies.transpose(0, 2, 1)
        grid = mapped[..., :2] / mapped[..., 2:3]
        grid = torch.from_numpy(grid.reshape(-1, height, width, 2).astype(np.float32))
        warped = F.grid_sample(torch.from_numpy(clips), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        return warped.numpy()

    def _homography(self, s):
        angle = np.deg2rad(self.rng.uniform(-s.rotation_degrees, s.rotation_degrees))
        scale = 1.0 + self.rng.uniform(-s.scale, s.scale)
        aspect = 1.0 + self.rng.uniform(-s.aspect, s.aspect)
        shear = self.rng.uniform(-s.shear, s.shear)
        shift = self.rng.uniform(-s.shift, s.shift, size=2)
        tilt = self.rng.uniform(-s.perspective, s.perspective, size=2)
        cos, sin = np.cos(angle), np.sin(angle)
        linear = np.array([[cos, -sin], [sin, cos]]) @ np.array([[scale * aspect, shear], [0.0, scale / aspect]])
        # The sampling grid maps output to input, hence the inverse of the change drawn.
        forward = np.eye(3)
        forward[:2, :2] = linear
        forward[:2, 2] = shift
        forward[2, :2] = tilt
        return np.linalg.inv(forward)

    def _erase(self, clip):
        """A static occluder: one rectangle, at the same place in every frame, set to background."""
        _, height, width = clip.shape
        area = self.rng.uniform(*self.strengths.erase_area) * height * width
        ratio = np.exp(self.rng.uniform(np.log(0.3), np.log(3.3)))
        box_h = int(min(height, max(1, round(np.sqrt(area * ratio)))))
        box_w = int(min(width, max(1, round(np.sqrt(area / ratio)))))
        top = self.rng.integers(0, height - box_h + 1)
        left = self.rng.integers(0, width - box_w + 1)
        clip[:, top : top + box_h, left : left + box_w] = 0.0
        return clip

    def _corrupt(self, clip):
        """What a background model does to a walker, one kind per clip, drawn afresh in each frame."""
        kind = self.rng.integers(0, 5)
        frames = torch.from_numpy(np.ascontiguousarray(clip))[:, None]
        if kind == 0:
            frames = self._ragged(frames)
        elif kind == 1:
            frames = self._holes(frames)
        elif kind == 2:
            frames = self._merged_legs(frames)
        elif kind == 3:
            frames = self._shadow(frames)
        else:
            frames = self._low_resolution(frames)
        return frames[:, 0].numpy()

    def _noise_field(self, frames, cell):
        """Smooth noise in [0, 1): uniform draws on a coarse grid, upsampled bilinearly."""
        count, _, height, width = frames.shape
        coarse = self.rng.random((count, 1, -(-height // cell) + 1, -(-width // cell) + 1), dtype=np.float32)
        return F.interpolate(torch.from_numpy(coarse), size=(height, width), mode="bilinear", align_corners=False)

    def _ragged(self, frames):
        dilated = F.max_pool2d(frames, 3, stride=1, padding=1)
        eroded = -F.max_pool2d(-frames, 3, stride=1, padding=1)
        field = self._noise_field(frames, cell=4)
        amount = self.rng.uniform(0.15, 0.35)
        frames = torch.where(field < amount, dilated, frames)
        return torch.where(field > 1.0 - amount, eroded, frames)

    def _holes(self, frames):
        field = self._noise_field(frames, cell=int(self.rng.integers(3, 7)))
        return torch.where(field > self.rng.uniform(0.80, 0.92), torch.zeros_like(frames), frames)

    def _merged_legs(self, frames):
        """A horizontal closing over the lower part: the gap between the legs fills as it does when
        the background model blurs them together."""
        height = frames.shape[2]
        width = int(self.rng.integers(2, 5)) * 2 + 1
        knee = int(height * self.rng.uniform(0.55, 0.70))
        lower = frames[:, :, knee:]
        closed = F.max_pool2d(lower, (1, width), stride=1, padding=(0, width // 2))
        closed = -F.max_pool2d(-closed, (1, width), stride=1, padding=(0, width // 2))
        return torch.cat([frames[:, :, :knee], torch.maximum(lower, closed)], dim=2)

    def _shadow(self, frames):
        """A shadow cast on the floor: the lowest rows of the walker spread to one side."""
        height = frames.shape[2]
        rows = int(self.rng.integers(2, max(3, height // 12)))
        reach = int(self.rng.integers(3, 10))
        feet = frames[:, :, height - rows :]
        spread = F.max_pool2d(F.pad(feet, (reach, 0) if self.rng.random() < 0.5 else (0, reach)), (1, reach + 1), stride=1)
        return torch.cat([frames[:, :, : height - rows], torch.maximum(feet, spread)], dim=2)

    def _low_resolution(self, frames):
        """A walker a few dozen pixels tall: area-averaged down, scaled back up, thresholded again."""
        _, _, height, width = frames.shape
        factor = self.rng.uniform(2.0, 4.0)
        small = F.interpolate(frames, size=(max(8, round(height / factor)), max(6, round(width / factor))), mode="area")
        large = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        return (large >= self.rng.uniform(0.4, 0.6)).to(frames.dtype)
