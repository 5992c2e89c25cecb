"""Stage ``landmarks``: the MediaPipe face mesh on every frame.

Writes ``landmarks.npy`` (float32 [N, 478, 3]: x, y in pixels, z MediaPipe's relative depth
in the same pixel scale as x), the reference's ``<i>.lms`` files (iBUG-68, ``x y`` per line,
from the mesh, or from face-alignment's FAN with ``backend="face_alignment"``) in their own
folder ``lms/`` (the reference reads them from ``ori_imgs/``, which normalize owns), and a
manifest with per-frame detection flags, the interpolated frame ranges and face counts.

Short detection gaps are filled by linear interpolation (held at the clip's ends) and
reported; a long gap or too many missing frames is an error that names the frames, because
every later stage needs the face on every frame.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StageError
from ..fsio import atomic_dir, atomic_file, write_manifest
from ..media.face_mesh import MeshTracker
from ..media.frames import read_rgb
from ..progress import progress
from .mesh_indices import IBUG68_FROM_MESH, ibug68_from_mesh
from .subject_io import (
    MESH_POINTS,
    format_ranges,
    frame_ranges,
    normalize_manifest,
    subject_frames,
    use_torch_threads_in_cv2,
)

STAGE = "landmarks"
BACKENDS = ("mediapipe", "face_alignment")
log = logging.getLogger("ernerf.landmarks")


def fill_gaps(points: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Linear interpolation over frames without a detection; held constant at the ends.

    points [N, K, D] (values at missing frames are ignored), found bool [N] -> [N, K, D].
    """
    n = len(found)
    have = np.flatnonzero(found)
    flat = points.reshape(n, -1)
    filled = np.empty_like(flat)
    t = np.arange(n)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, have, flat[have, j])
    return filled.reshape(points.shape)


def check_gaps(
    subject: str, found: np.ndarray, max_missing_share: float, max_gap_frames: int, frames_dir: Path
) -> list[tuple[int, int]]:
    """Raise StageError when the face is missing too often or too long; return the gaps."""
    n = len(found)
    missing = np.flatnonzero(~found)
    if len(missing) == n:
        raise StageError(
            subject,
            STAGE,
            f"no face found in any of the {n} frames (0-{n - 1}) of {frames_dir}",
            "use a video that shows one face, frontal and unoccluded, on every frame",
        )
    gaps = frame_ranges(missing)
    longest = max((b - a + 1 for a, b in gaps), default=0)
    share = len(missing) / n
    if longest > max_gap_frames or share > max_missing_share:
        raise StageError(
            subject,
            STAGE,
            f"no face in frames {format_ranges(missing)} of {frames_dir} ({len(missing)} of {n} frames, "
            f"{share:.0%}; longest gap {longest} frames; allowed: gaps up to {max_gap_frames} frames "
            f"and {max_missing_share:.0%} of frames)",
            "cut these frames out of the video, or raise landmarks.max_gap_frames / max_missing_share",
        )
    return gaps


def write_lms(path: Path, points68: np.ndarray) -> None:
    """The reference's ``.lms``: 68 lines ``x y``. points68 [68, >=2]."""
    with atomic_file(path) as tmp:
        np.savetxt(tmp, points68[:, :2], fmt="%f")


def detect_landmarks(
    subject: str,
    data_dir: str | os.PathLike,
    dense_path: str | os.PathLike,
    manifest_path: str | os.PathLike,
    lms_dir: str | os.PathLike | None = None,
    backend: str = "mediapipe",
    max_missing_share: float = 0.1,
    max_gap_frames: int = 12,
) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise StageError(subject, STAGE, f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    use_torch_threads_in_cv2()
    paths = subject_frames(subject, STAGE, data_dir)
    frames_dir = paths[0].parent
    normalize = normalize_manifest(data_dir)
    if normalize and normalize.get("frames") not in (None, len(paths)):
        raise StageError(
            subject,
            STAGE,
            f"{frames_dir} has {len(paths)} frames but normalize made {normalize['frames']}",
            "rerun the normalize stage",
        )
    fan = None
    if backend == "face_alignment":
        from ..device import resolve_device
        from .fan_landmarks import FanLandmarks

        # Fails before the long loop when weights are missing; CUDA when present.
        fan = FanLandmarks(subject, STAGE, device=str(resolve_device("auto")))

    n = len(paths)
    mesh = np.zeros((n, MESH_POINTS, 3), np.float32)
    found = np.zeros(n, bool)
    face_counts = np.zeros(n, np.int32)
    fan68 = np.zeros((n, 68, 2), np.float32)
    fan_found = np.zeros(n, bool)
    height, width = read_rgb(paths[0]).shape[:2]
    with MeshTracker(max_faces=2) as tracker:
        for i, path in enumerate(progress(paths, desc="landmarks", unit="frame")):
            rgb = read_rgb(path)
            if rgb.shape[:2] != (height, width):
                raise StageError(
                    subject,
                    STAGE,
                    f"{path} is {rgb.shape[1]}x{rgb.shape[0]}, frame 0 is {width}x{height}",
                    "rerun the normalize stage",
                )
            face, face_counts[i] = tracker(rgb)
            if face is not None:
                mesh[i], found[i] = face, True
            if fan is not None:
                near = mesh[i, :, :2].mean(0) if found[i] else None
                pts = fan(rgb, near)
                if pts is not None:
                    fan68[i], fan_found[i] = pts, True

    gaps = check_gaps(subject, found, max_missing_share, max_gap_frames, frames_dir)
    mesh = fill_gaps(mesh, found).astype(np.float32)
    multi = np.flatnonzero(face_counts > 1)
    if len(multi):
        log.warning(
            "%d frames show more than one face (%s); followed the largest, most central one",
            len(multi),
            format_ranges(multi),
        )
    if gaps:
        log.warning("no face in frames %s: interpolated", format_ranges(np.flatnonzero(~found)))

    if fan is not None:
        fan_gaps = check_gaps(subject, fan_found, max_missing_share, max_gap_frames, frames_dir)
        points68 = fill_gaps(fan68, fan_found)
    else:
        fan_gaps = []
        points68 = ibug68_from_mesh(mesh)
    # the .lms files are this stage's own folder: ori_imgs/ belongs to normalize
    with atomic_dir(Path(lms_dir) if lms_dir else Path(data_dir) / "lms") as tmp_lms:
        for path, pts in zip(paths, points68, strict=True):
            write_lms(tmp_lms / f"{path.stem}.lms", pts)
    with atomic_file(dense_path) as tmp:
        np.save(tmp, mesh)

    facts: dict[str, Any] = dict(
        frames=n,
        resolution=[width, height],
        dense_shape=list(mesh.shape),
        dense_units="x, y pixels; z MediaPipe relative depth scaled like x (pixels)",
        lms_source="face_alignment FAN 2D" if fan is not None else "MediaPipe mesh -> iBUG-68",
        mesh_to_ibug68=IBUG68_FROM_MESH.tolist(),
        detected=found.tolist(),
        face_counts=face_counts.tolist(),
        missing_frames=int((~found).sum()),
        interpolated_ranges=[list(g) for g in gaps],
        multi_face_ranges=[list(r) for r in frame_ranges(multi)],
    )
    if fan is not None:
        facts.update(lms_detected=fan_found.tolist(), lms_interpolated_ranges=[list(g) for g in fan_gaps])
    log.info(
        "landmarks: %d frames, face found on %d, %d interpolated, %d with several faces",
        n,
        int(found.sum()),
        int((~found).sum()),
        len(multi),
    )
    return write_manifest(
        manifest_path,
        stage=STAGE,
        subject=subject,
        params=dict(backend=backend, max_missing_share=max_missing_share, max_gap_frames=max_gap_frames),
        **facts,
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="face landmarks on every frame (landmarks.npy, lms/<i>.lms)")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (holds ori_imgs/)")
    p.add_argument("--dense", help="output [N, 478, 3] array (default: DATA_DIR/landmarks.npy)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/landmarks.json)")
    p.add_argument("--lms-dir", help="output folder of the 68-point <i>.lms files (default: DATA_DIR/lms)")
    p.add_argument("--backend", choices=BACKENDS, default="mediapipe")
    p.add_argument("--max-missing-share", type=float, default=0.1)
    p.add_argument("--max-gap-frames", type=int, default=12)
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return detect_landmarks(
        subject=args.subject,
        data_dir=data,
        dense_path=args.dense or data / "landmarks.npy",
        manifest_path=args.manifest or data.parent / "manifests" / "landmarks.json",
        lms_dir=args.lms_dir or data / "lms",
        backend=args.backend,
        max_missing_share=args.max_missing_share,
        max_gap_frames=args.max_gap_frames,
    )
