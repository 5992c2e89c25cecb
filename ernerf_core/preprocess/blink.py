"""Stage ``blink``: eye-blink intensity AU45_r per frame, written as OpenFace's ``au.csv``.

Backend ``ear`` (default): the eye aspect ratio (lid opening / eye width, 3D mesh points,
both eyes averaged) calibrated per subject: the running median EAR is "open" (AU45 0), and
the deepest closure of the clip, bounded to a plausible 40-75% drop, reaches AU45_CLOSED,
inside OpenFace's range for a full blink; changes within the subject's own jitter count as
open.
Backend ``openface``: a user's OpenFace CSV, reindexed by ``frame`` to exactly the subject's
frames; frames OpenFace dropped or failed on are interpolated (the reference crashes there).

The CSV has OpenFace's column names, leading spaces included (the reference reads
``" AU45_r"``): ``frame`` (from 1, like OpenFace), ``face_id``, ``timestamp``,
``confidence``, ``success``, ``AU45_r``.
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import StageError
from ..fsio import atomic_file, read_json, write_manifest
from .mesh_indices import LEFT_EYE_CORNERS, LEFT_EYE_LID_PAIRS, RIGHT_EYE_CORNERS, RIGHT_EYE_LID_PAIRS
from .subject_io import format_ranges, load_dense_landmarks, normalize_manifest, subject_frames

STAGE = "blink"
BACKENDS = ("ear", "openface")
COLUMNS = ["frame", " face_id", " timestamp", " confidence", " success", " AU45_r"]
AU45_CLOSED = 2.5  # AU45_r of a fully closed eye (OpenFace blinks peak ~1.5-3)
CLOSED_DROP = (0.40, 0.75)  # a full blink lowers the EAR by this share of its open value
NOISE_SIGMAS = 2.0  # EAR changes within this many jitter sigmas count as open
OPEN_WINDOW_S = 2.0  # the open-eye EAR is a running median over this long
log = logging.getLogger("ernerf.blink")


def eye_aspect_ratio(mesh: np.ndarray) -> np.ndarray:
    """Mean over both eyes of (mean lid opening / eye width). mesh [N, 478, 3] -> [N]."""
    ratios = []
    for (outer, inner), pairs in (
        (RIGHT_EYE_CORNERS, RIGHT_EYE_LID_PAIRS),
        (LEFT_EYE_CORNERS, LEFT_EYE_LID_PAIRS),
    ):
        width = np.linalg.norm(mesh[:, outer] - mesh[:, inner], axis=-1)
        opening = np.mean([np.linalg.norm(mesh[:, up] - mesh[:, low], axis=-1) for up, low in pairs], axis=0)
        ratios.append(opening / np.maximum(width, 1e-6))
    return np.mean(ratios, axis=0)


def calibrate_au45(ear: np.ndarray, fps: float = 25.0) -> tuple[np.ndarray, dict[str, float]]:
    """EAR [N] -> (AU45_r [N] in 0..AU45_CLOSED, the calibration used).

    "Open" is the running median EAR over OPEN_WINDOW_S (people open their eyes wider or
    narrower over a clip; blinks are too short to move a median), and closure is the drop
    below it as a share of it.
    """
    window = int(min(len(ear), round(OPEN_WINDOW_S * fps))) | 1
    open_ear = ndimage.median_filter(ear, size=window, mode="nearest")
    drop = 1.0 - ear / np.maximum(open_ear, 1e-6)  # 0 open, 1 shut
    jitter = max(float(1.4826 * np.median(np.abs(drop - np.median(drop)))), 0.01)  # robust sigma
    closed_drop = float(np.clip(drop.max(), *CLOSED_DROP))
    dead = NOISE_SIGMAS * jitter
    span = max(closed_drop - dead, 0.1)
    closure = np.clip((drop - dead) / span, 0.0, 1.0)
    return (AU45_CLOSED * closure).astype(np.float32), dict(
        open_ear_median=float(np.median(open_ear)),
        drop_jitter=jitter,
        closed_drop=closed_drop,
        au45_closed=AU45_CLOSED,
        open_window_frames=window,
    )


def blink_events(au45: np.ndarray, threshold: float = 1.0) -> list[tuple[int, int]]:
    """Runs of frames with AU45_r above ``threshold``: [(first, last), ...] inclusive."""
    above = np.concatenate([[False], np.asarray(au45) > threshold, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    return [(int(a), int(b) - 1) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def write_au_csv(path: str | os.PathLike, au45: np.ndarray, success: np.ndarray, fps: float) -> None:
    """OpenFace-style CSV; frames numbered from 1 as OpenFace does."""
    with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for i, (value, ok) in enumerate(zip(au45, success, strict=True)):
            writer.writerow(
                [i + 1, 0, f"{i / fps:.3f}", f"{1.0 if ok else 0.0:.2f}", int(bool(ok)), f"{value:.2f}"]
            )


def read_openface_au45(
    subject: str, csv_path: str | os.PathLike, frames: int
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A user's OpenFace CSV -> (AU45_r [frames], success [frames], repair notes).

    Rows are matched to frames by the ``frame`` column (OpenFace counts from 1); frames that
    are missing, duplicated away or marked unsuccessful are interpolated from their neighbours.
    """
    path = Path(csv_path).expanduser()
    if not path.is_file():
        raise StageError(
            subject,
            STAGE,
            f"OpenFace CSV {path} not found",
            "set blink.openface_csv to the CSV FeatureExtraction wrote, or use blink.backend: ear",
        )
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise StageError(subject, STAGE, f"{path} is empty", "rerun OpenFace FeatureExtraction on the frames")
    header = [h.strip() for h in rows[0]]
    for name in ("frame", "AU45_r"):
        if name not in header:
            raise StageError(
                subject,
                STAGE,
                f"{path} has no {name!r} column (columns: {', '.join(header[:8])}...)",
                "use the CSV of OpenFace FeatureExtraction run with action units (-aus)",
            )
    col = {name: header.index(name) for name in ("frame", "AU45_r", "success") if name in header}
    values = np.full(frames, np.nan)
    extra = []
    try:
        for row in rows[1:]:
            if not row:
                continue
            frame = int(float(row[col["frame"]])) - 1
            ok = "success" not in col or float(row[col["success"]]) > 0
            if not 0 <= frame < frames:
                extra.append(frame + 1)
            elif ok:
                values[frame] = float(row[col["AU45_r"]])
    except (ValueError, IndexError) as err:
        raise StageError(
            subject,
            STAGE,
            f"{path} has an unreadable row ({err})",
            "use the CSV exactly as OpenFace wrote it",
        ) from None
    have = np.isfinite(values)
    if have.sum() < 0.5 * frames:
        raise StageError(
            subject,
            STAGE,
            f"{path} has AU45 for only {int(have.sum())} of the subject's {frames} frames",
            "run OpenFace on this subject's ori_imgs (25 fps frames), or use blink.backend: ear",
        )
    missing = np.flatnonzero(~have)
    t = np.arange(frames)
    repaired = np.interp(t, t[have], values[have]).astype(np.float32)
    notes = dict(
        openface_rows=len(rows) - 1,
        filled_frames=format_ranges(missing) if len(missing) else "",
        filled_count=int(len(missing)),
        rows_beyond_subject=len(extra),
    )
    if len(missing):
        log.warning("OpenFace CSV lacks AU45 for frames %s: interpolated", format_ranges(missing))
    if extra:
        log.warning(
            "OpenFace CSV has %d rows for frames beyond the subject's %d: ignored", len(extra), frames
        )
    return repaired, have, notes


def extract_blink(
    subject: str,
    data_dir: str | os.PathLike,
    au_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    backend: str = "ear",
    openface_csv: str | os.PathLike | None = None,
) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise StageError(subject, STAGE, f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    data_dir = Path(data_dir)
    frames = len(subject_frames(subject, STAGE, data_dir))
    fps = float((normalize_manifest(data_dir) or {}).get("fps", 25.0))
    if backend == "ear":
        mesh = load_dense_landmarks(subject, STAGE, data_dir, frames)
        landmarks_manifest = data_dir.parent / "manifests" / "landmarks.json"
        detected = np.ones(frames, bool)
        if landmarks_manifest.exists():
            detected = np.asarray(read_json(landmarks_manifest).get("detected", detected), bool)
        ear = eye_aspect_ratio(mesh.astype(np.float64))
        au45, calibration = calibrate_au45(ear, fps)
        success, notes = detected, dict(calibration=calibration)
    else:
        if not openface_csv:
            raise StageError(
                subject,
                STAGE,
                "blink.backend is openface but blink.openface_csv is not set",
                "set blink.openface_csv to OpenFace's CSV for this subject, or use blink.backend: ear",
            )
        au45, success, notes = read_openface_au45(subject, openface_csv, frames)
    write_au_csv(au_path, au45, success, fps)
    events = blink_events(au45)
    log.info(
        "blink: %d frames, %d blinks (AU45_r > 1), AU45_r max %.2f", frames, len(events), float(au45.max())
    )
    return write_manifest(
        manifest_path,
        stage=STAGE,
        subject=subject,
        params=dict(backend=backend, openface_csv=os.fspath(openface_csv) if openface_csv else None),
        frames=frames,
        fps=fps,
        blinks=[list(e) for e in events],
        au45_max=round(float(au45.max()), 3),
        au45_mean=round(float(au45.mean()), 3),
        **notes,
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="eye blink AU45_r per frame (au.csv)")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (ori_imgs/, landmarks.npy)")
    p.add_argument("--au", help="output CSV (default: DATA_DIR/au.csv)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/blink.json)")
    p.add_argument("--backend", choices=BACKENDS, default="ear")
    p.add_argument("--openface-csv", help="OpenFace FeatureExtraction CSV for --backend openface")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return extract_blink(
        subject=args.subject,
        data_dir=data,
        au_path=args.au or data / "au.csv",
        manifest_path=args.manifest or data.parent / "manifests" / "blink.json",
        backend=args.backend,
        openface_csv=args.openface_csv,
    )
