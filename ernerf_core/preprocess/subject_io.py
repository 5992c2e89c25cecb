"""What the face preprocessing stages share: the subject's frames, its normalize manifest,
its dense landmarks, and OpenCV's thread count.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..errors import StageError
from ..fsio import read_json
from ..media.frames import frame_paths

MESH_POINTS = 478


def subject_frames(subject: str, stage: str, data_dir: str | os.PathLike) -> list[Path]:
    """``data_dir/ori_imgs/<i>.jpg`` in frame order; StageError when absent or not 0..N-1."""
    frames_dir = Path(data_dir) / "ori_imgs"
    if not frames_dir.is_dir():
        raise StageError(subject, stage, f"no frames folder {frames_dir}", "run the normalize stage first")
    paths = frame_paths(frames_dir)
    if not paths:
        raise StageError(
            subject, stage, f"no <i>.jpg frames in {frames_dir}", "run the normalize stage first"
        )
    numbers = [int(p.stem) for p in paths]
    if numbers != list(range(len(paths))):
        gap = next(i for i, n in enumerate(numbers) if n != i)
        raise StageError(
            subject,
            stage,
            f"frames in {frames_dir} are not numbered 0..{len(paths) - 1} (frame {gap}.jpg is missing)",
            "rerun the normalize stage",
        )
    return paths


def normalize_manifest(data_dir: str | os.PathLike) -> dict[str, Any] | None:
    """``data_dir/../manifests/normalize.json`` when present (it is absent for hand-made folders)."""
    path = Path(data_dir).parent / "manifests" / "normalize.json"
    return read_json(path) if path.exists() else None


def load_dense_landmarks(subject: str, stage: str, data_dir: str | os.PathLike, frames: int) -> np.ndarray:
    """``data_dir/landmarks.npy``: float32 [N, 478, 3] pixels, checked against the frame count."""
    path = Path(data_dir) / "landmarks.npy"
    if not path.exists():
        raise StageError(subject, stage, f"no dense landmarks {path}", "run the landmarks stage first")
    mesh = np.load(path)
    if mesh.ndim != 3 or mesh.shape[1:] != (MESH_POINTS, 3) or mesh.shape[0] != frames:
        raise StageError(
            subject,
            stage,
            f"{path} has shape {mesh.shape}, expected ({frames}, {MESH_POINTS}, 3)",
            "rerun the landmarks stage",
        )
    return mesh


def use_torch_threads_in_cv2() -> int:
    """OpenCV follows the thread count the stage runner gave torch (Snakemake ``threads:``)."""
    threads = max(1, torch.get_num_threads())
    cv2.setNumThreads(threads)
    return threads


def format_ranges(frames: np.ndarray | list[int], limit: int = 8) -> str:
    """Frame numbers as ``"3-5, 9, 40-114"``; long lists end with how many ranges were left out."""
    ranges = frame_ranges(frames)
    parts = [f"{a}" if a == b else f"{a}-{b}" for a, b in ranges[:limit]]
    if len(ranges) > limit:
        parts.append(f"... ({len(ranges) - limit} more ranges)")
    return ", ".join(parts)


def frame_ranges(frames: np.ndarray | list[int]) -> list[tuple[int, int]]:
    """Sorted frame numbers -> inclusive runs ``[(first, last), ...]``."""
    frames = sorted(int(f) for f in frames)
    runs: list[tuple[int, int]] = []
    for f in frames:
        if runs and f == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], f)
        else:
            runs.append((f, f))
    return runs
