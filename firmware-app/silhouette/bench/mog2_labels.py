"""OpenCV's MOG2 on frames exported by `silhouette_bench --export`: writes its raw labels
(0 background, 127 shadow, 255 foreground) beside each `CONDITION-SEED.npy` as `.mog2.npy`, and
prints the time MOG2 alone takes per frame. OpenCV defaults (history 500, varThreshold 16,
detectShadows on), as most gait pipelines use it."""

import glob
import sys
import time

import cv2
import numpy as np


def main(directory: str, threads: int) -> None:
    cv2.setNumThreads(threads)
    total_seconds, total_frames = 0.0, 0
    for path in sorted(glob.glob(f"{directory}/*.npy")):
        if path.endswith(".mog2.npy"):
            continue
        frames = np.load(path)
        subtractor = cv2.createBackgroundSubtractorMOG2()
        labels = np.empty_like(frames)
        for i, frame in enumerate(frames):
            started = time.perf_counter()
            labels[i] = subtractor.apply(frame)
            total_seconds += time.perf_counter() - started
        total_frames += len(frames)
        np.save(path[: -len(".npy")] + ".mog2.npy", labels)
    height, width = frames.shape[1:]
    print(
        f"OpenCV {cv2.__version__} MOG2 alone, {width}x{height}, {threads} thread(s): "
        f"{1000 * total_seconds / total_frames:.2f} ms/frame over {total_frames} frames"
    )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1)
