"""Frame folders (``<i>.jpg`` numbered from 0) and single-image read/write, in RGB order."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from ..fsio import atomic_file


def frame_paths(frames_dir: str | os.PathLike, ext: str = ".jpg") -> list[Path]:
    """Files ``<integer><ext>`` in ``frames_dir``, sorted by number (0, 1, 2, ..., 10)."""
    ext = ext if ext.startswith(".") else f".{ext}"
    found = [p for p in Path(frames_dir).iterdir()
             if p.suffix.lower() == ext.lower() and p.stem.isdigit()]
    return sorted(found, key=lambda p: int(p.stem))


def frame_count(frames_dir: str | os.PathLike, ext: str = ".jpg") -> int:
    return len(frame_paths(frames_dir, ext))


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image as uint8 RGB ``[H, W, 3]`` (grey and alpha images are converted)."""
    bgr = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"{path}: missing or not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def write_jpg(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> None:
    """Write uint8 RGB ``[H, W, 3]`` (or grey ``[H, W]``) as JPEG, atomically."""
    img = _to_bgr(rgb)
    _write_encoded(path, ".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])


def write_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write ``[H, W]`` (grey / labels), ``[H, W, 3]`` RGB or ``[H, W, 4]`` RGBA, uint8 or
    uint16, as lossless PNG, atomically."""
    arr = np.asarray(arr)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"write_png needs uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 4:
        img = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA)
    else:
        img = _to_bgr(arr)
    _write_encoded(path, ".png", img, [])


def _to_bgr(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2:
        return arr
    if arr.ndim == 3 and arr.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(arr), cv2.COLOR_RGB2BGR)
    raise ValueError(f"expected an image [H, W] or [H, W, 3], got shape {arr.shape}")


def _write_encoded(path: str | os.PathLike, ext: str, img: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(ext, img, params)
    if not ok:
        raise ValueError(f"{path}: cv2 could not encode the image as {ext}")
    with atomic_file(path) as tmp:
        tmp.write_bytes(buf.tobytes())
