"""Stage ``tracking``: per-frame head pose, one focal and a face model from the landmarks.

Writes ``track_params.pt`` in the reference's layout (ERNERF_FACTS.md section 1): a plain
dict of tensors ``euler`` [N, 3] (radians, the reference's ``euler2rot`` convention),
``trans`` [N, 3] (decimetres, camera space, the head ~7 dm in front of the camera), ``focal``
[1] (pixels), ``id`` (the shared face shape, [1, 3P] decimetres, or the BFM identity
coefficients), ``exp`` [N, K] expression weights; plus ``exp_basis`` [K, 3P] and
``image_size`` [2] (h, w) so ``transforms`` needs nothing else. The reference's
``save_transforms`` reads this file as it is.

Backends: ``landmarks`` (default; ``landmark_ba``: bundle adjustment of MediaPipe's dense
landmarks, no model files) and ``bfm`` (the Basel Face Model 2009 fit of the reference,
needs the user's ``01_MorphableModel.mat``; see ``bfm_fit``).

Frames whose mean reprojection error exceeds ``max_reprojection_px`` fail the stage,
naming the frames, before anything is written.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StageError
from ..fsio import atomic_file, write_manifest
from .landmark_ba import TrackerSettings, rotation_jitter_deg, track_landmarks, translation_jitter
from .subject_io import format_ranges, load_dense_landmarks, normalize_manifest, subject_frames

log = logging.getLogger(__name__)

STAGE = "tracking"
BACKENDS = ("landmarks", "bfm")
# ER-NeRF's head box in its own coordinates (bound 1, scale 4): ERNERF_FACTS.md section 2.
NERF_SCALE = 4.0
NERF_AABB = np.array([-1.0, -0.5, -1.0, 1.0, 0.5, 1.0])


def head_points_in_nerf(shape_dm: np.ndarray) -> np.ndarray:
    """[P, 3] head-frame points (dm) -> [P, 3] where ER-NeRF sees them.

    ``transforms`` divides the tracker's decimetres by 10 (metres) and the reference's
    ``nerf_matrix_to_ngp`` maps a world point (x, y, z) to (y, z, x) * scale.
    """
    world = np.asarray(shape_dm, dtype=np.float64) / 10.0
    return world[:, [1, 2, 0]] * NERF_SCALE


def share_in_aabb(points: np.ndarray) -> float:
    inside = np.all((points >= NERF_AABB[:3]) & (points <= NERF_AABB[3:]), axis=1)
    return float(inside.mean())


def _resolution(subject: str, data_dir: Path, frame_paths: list[Path]) -> int:
    norm = normalize_manifest(data_dir)
    if norm and "resolution" in norm:
        return int(norm["resolution"])
    import cv2

    img = cv2.imread(os.fspath(frame_paths[0]))
    if img is None:
        raise StageError(subject, STAGE, f"cannot read {frame_paths[0]}", "rerun the normalize stage")
    if img.shape[0] != img.shape[1]:
        raise StageError(subject, STAGE, f"frames are {img.shape[1]}x{img.shape[0]}, not square",
                         "rerun the normalize stage (it crops square frames)")
    return int(img.shape[0])


def track_head_pose(subject: str, data_dir: str | os.PathLike, params_path: str | os.PathLike,
                    preview_path: str | os.PathLike, manifest_path: str | os.PathLike,
                    backend: str = "landmarks", bfm_model: str | os.PathLike | None = None,
                    max_reprojection_px: float = 8.0, expressions: int = 8,
                    focal_range: tuple[float, float] | list[float] = (600.0, 3000.0),
                    smooth_weight: float = 1.0, seed: int = 0) -> dict[str, Any]:
    """Track the head in ``data_dir`` (ori_imgs/, landmarks.npy); write params, preview, manifest."""
    started = time.time()
    data_dir = Path(data_dir)
    if backend not in BACKENDS:
        raise StageError(subject, STAGE, f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    frames = subject_frames(subject, STAGE, data_dir)
    landmarks = load_dense_landmarks(subject, STAGE, data_dir, len(frames)).astype(np.float64)
    bad = np.where(~np.isfinite(landmarks).all(axis=(1, 2)))[0]
    if len(bad):
        raise StageError(subject, STAGE, f"landmarks.npy has missing (non-finite) points on frames "
                         f"{format_ranges(bad)}", "rerun the landmarks stage (it fills short gaps)")
    resolution = _resolution(subject, data_dir, frames)
    lo, hi = float(focal_range[0]), float(focal_range[1])
    if not 0 < lo <= hi:
        raise StageError(subject, STAGE, f"focal_range {focal_range} is not an increasing pair of positive numbers",
                         "set tracking.focal_range to e.g. [600, 3000]")
    settings = TrackerSettings(n_expressions=int(expressions), focal_range_512=(lo, hi),
                               focal_steps=5 if hi > lo else 1, smooth_weight=float(smooth_weight), seed=int(seed))

    if backend == "bfm":
        from .bfm_fit import track_bfm

        track, id_code, extras = track_bfm(subject, STAGE, landmarks, frames, resolution, bfm_model, settings)
    else:
        track = track_landmarks(landmarks, resolution, settings)
        id_code, extras = track.shape.reshape(1, -1), {}

    worst = np.where(track.reprojection > max_reprojection_px)[0]
    if len(worst):
        raise StageError(subject, STAGE,
                         f"tracking diverged: mean reprojection error above {max_reprojection_px:g} px on "
                         f"{len(worst)} of {len(frames)} frames ({format_ranges(worst)}; worst "
                         f"{track.reprojection.max():.1f} px at frame {int(track.reprojection.argmax())})",
                         "check those frames' landmarks (a wrong face, occlusion, a cut in the video) "
                         "or raise tracking.max_reprojection_px")

    params = {
        "euler": torch.tensor(track.euler, dtype=torch.float32),
        "trans": torch.tensor(track.trans, dtype=torch.float32),
        "focal": torch.tensor([track.focal], dtype=torch.float32),
        "id": torch.tensor(id_code, dtype=torch.float32),
        "exp": torch.tensor(track.expression, dtype=torch.float32),
        "exp_basis": torch.tensor(track.basis.reshape(len(track.basis), 3 * track.basis.shape[1]), dtype=torch.float32),
        "image_size": torch.tensor([resolution, resolution], dtype=torch.int64),
    }
    with atomic_file(params_path) as tmp:
        torch.save(params, tmp)

    from .tracking_preview import write_preview_png, write_preview_video

    detected = landmarks[:, : track.projected.shape[1], :2]
    shown = write_preview_png(preview_path, frames, detected, track.projected, track.rotation, track.trans,
                              track.focal, track.reprojection)
    video_path = Path(preview_path).with_suffix(".mp4")
    video_frames = write_preview_video(video_path, frames, detected, track.projected, track.rotation,
                                       track.trans, track.focal, track.reprojection)

    err = track.reprojection
    point_err = np.linalg.norm(track.projected - detected, axis=-1)
    nerf = head_points_in_nerf(track.shape)
    elapsed = time.time() - started
    log.info("tracking: %d frames, focal %.1f px, reprojection median %.2f px (max %.2f), "
             "jitter %.3f deg/frame, %.1f s", len(frames), track.focal, np.median(err), err.max(),
             rotation_jitter_deg(track.rotation), elapsed)
    return write_manifest(
        manifest_path, stage=STAGE, subject=subject,
        params=dict(backend=backend, bfm_model=os.fspath(bfm_model) if bfm_model else None,
                    max_reprojection_px=max_reprojection_px, expressions=int(expressions),
                    focal_range=[lo, hi], smooth_weight=float(smooth_weight), seed=int(seed)),
        frames=len(frames), resolution=resolution, focal=round(track.focal, 3),
        focal_search={f"{k:.1f}": round(v, 5) for k, v in track.focal_search.items()},
        reprojection_px=dict(median=round(float(np.median(err)), 4), p95=round(float(np.percentile(err, 95)), 4),
                             max=round(float(err.max()), 4), worst_frame=int(err.argmax()),
                             point_median=round(float(np.median(point_err)), 4)),
        per_frame_reprojection_px=[round(float(e), 3) for e in err],
        jitter=dict(rotation_deg_per_frame=round(rotation_jitter_deg(track.rotation), 5),
                    translation_mm_per_frame=round(100.0 * translation_jitter(track.trans), 5)),
        head=dict(points=int(len(track.shape)), nerf_extent_min=nerf.min(0).round(4).tolist(),
                  nerf_extent_max=nerf.max(0).round(4).tolist(), share_in_aabb=share_in_aabb(nerf),
                  camera_distance_m=round(float(np.linalg.norm(track.trans, axis=1).mean() / 10.0), 4)),
        preview=dict(png=os.fspath(preview_path), frames=shown, video=os.fspath(video_path),
                     video_frames=video_frames),
        outputs=dict(params=os.fspath(params_path)), seconds=round(elapsed, 2), **extras)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="head pose, focal and face model from the landmarks (track_params.pt)")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (ori_imgs/, landmarks.npy)")
    p.add_argument("--params", help="output (default: DATA_DIR/track_params.pt)")
    p.add_argument("--preview", help="output PNG (default: DATA_DIR/../preview/tracking.png)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/tracking.json)")
    p.add_argument("--backend", choices=BACKENDS, default="landmarks")
    p.add_argument("--bfm-model", help="01_MorphableModel.mat or its converted .npz (backend bfm)")
    p.add_argument("--max-reprojection-px", type=float, default=8.0)
    p.add_argument("--expressions", type=int, default=8)
    p.add_argument("--focal-range", type=float, nargs=2, default=(600.0, 3000.0), metavar=("LO", "HI"))
    p.add_argument("--smooth-weight", type=float, default=1.0)
    p.set_defaults(func=_run_cli)
    from .bfm import add_cli as add_bfm_convert

    add_bfm_convert(subparsers)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return track_head_pose(subject=args.subject, data_dir=data, params_path=args.params or data / "track_params.pt",
                           preview_path=args.preview or data.parent / "preview" / "tracking.png",
                           manifest_path=args.manifest or data.parent / "manifests" / "tracking.json",
                           backend=args.backend, bfm_model=args.bfm_model,
                           max_reprojection_px=args.max_reprojection_px, expressions=args.expressions,
                           focal_range=args.focal_range, smooth_weight=args.smooth_weight)
