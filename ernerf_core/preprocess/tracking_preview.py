"""What the tracking looks like: tracked landmarks and head axes drawn over the frames.

A PNG of a few frames (evenly spaced, plus the frame with the largest reprojection error)
and a short H.264 clip of the first seconds. Detected landmarks are red, the tracked
model's projections green; the head axes (x red, y green, z blue, 0.5 dm long) start at
the head frame's origin.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..media.frames import read_rgb, write_png
from .pose_math import project

AXIS_DM = 0.5
TILE = 320


def draw_tracking(rgb: np.ndarray, detected: np.ndarray, tracked: np.ndarray, rotation: np.ndarray,
                  trans: np.ndarray, focal: float, label: str = "") -> np.ndarray:
    """[H, W, 3] uint8 frame with detected [P, 2] (red), tracked [P, 2] (green) and axes."""
    img = np.ascontiguousarray(rgb).copy()
    h, w = img.shape[:2]
    r = max(1, round(min(h, w) / 256))
    for x, y in np.round(detected).astype(int):     # a red rim shows where they disagree
        cv2.circle(img, (x, y), r + 1, (255, 60, 60), -1, cv2.LINE_AA)
    for x, y in np.round(tracked).astype(int):
        cv2.circle(img, (x, y), r, (60, 255, 60), -1, cv2.LINE_AA)
    ends = np.array([[0, 0, 0], [AXIS_DM, 0, 0], [0, AXIS_DM, 0], [0, 0, AXIS_DM]], dtype=np.float64)
    cam = ends @ rotation.T + trans
    uv = project(torch.from_numpy(cam), torch.tensor(float(focal), dtype=torch.float64),
                 torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64)).numpy()
    o = tuple(int(v) for v in np.round(uv[0]))
    for end, colour in zip(uv[1:], ((255, 0, 0), (0, 200, 0), (0, 120, 255)), strict=True):
        cv2.line(img, o, tuple(int(v) for v in np.round(end)), colour, 2 * r, cv2.LINE_AA)
    if label:
        scale = 0.4 * r
        cv2.putText(img, label, (4, int(16 * r)), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3 * r, cv2.LINE_AA)
        cv2.putText(img, label, (4, int(16 * r)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), r, cv2.LINE_AA)
    return img


def preview_frames(n_frames: int, reprojection: np.ndarray, count: int = 6) -> list[int]:
    """Evenly spaced frames plus the worst-reprojected one, sorted and unique."""
    even = np.linspace(0, n_frames - 1, max(count - 1, 1)).round().astype(int).tolist()
    return sorted(set(even) | {int(np.argmax(reprojection))})


def write_preview_png(path: str | os.PathLike, frame_paths: list[Path], detected: np.ndarray,
                      tracked: np.ndarray, rotation: np.ndarray, trans: np.ndarray, focal: float,
                      reprojection: np.ndarray, columns: int = 3) -> list[int]:
    """Grid of tiles for ``preview_frames``; returns the frame numbers shown."""
    picks = preview_frames(len(frame_paths), reprojection)
    tiles = []
    for i in picks:
        img = draw_tracking(read_rgb(frame_paths[i]), detected[i], tracked[i], rotation[i], trans[i], focal,
                            f"frame {i}  err {reprojection[i]:.2f} px")
        tiles.append(cv2.resize(img, (TILE, TILE), interpolation=cv2.INTER_AREA))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[k:k + columns], 1) for k in range(0, len(tiles), columns)]
    write_png(path, np.concatenate(rows, 0))
    return picks


def write_preview_video(path: str | os.PathLike, frame_paths: list[Path], detected: np.ndarray,
                        tracked: np.ndarray, rotation: np.ndarray, trans: np.ndarray, focal: float,
                        reprojection: np.ndarray, seconds: float = 4.0, fps: int = 25) -> int:
    """The first ``seconds`` of the overlay as H.264; returns the number of frames written."""
    from ..media.video import VideoWriter

    n = min(len(frame_paths), int(seconds * fps))
    first = read_rgb(frame_paths[0])
    side = min(first.shape[0], 512)
    with VideoWriter(path, side, side, fps=fps, preset="veryfast", crf=23) as vw:
        for i in range(n):
            img = draw_tracking(read_rgb(frame_paths[i]), detected[i], tracked[i], rotation[i], trans[i],
                                focal, f"{i}  {reprojection[i]:.2f} px")
            if img.shape[0] != side:
                img = cv2.resize(img, (side, side), interpolation=cv2.INTER_AREA)
            vw.write(img)
    return n
