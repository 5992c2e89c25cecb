"""Stage ``transforms``: camera poses for ER-NeRF from ``track_params.pt``.

The reference's conventions (its ``save_transforms``): translation divided by 10
(decimetres -> metres), the euler angles become a rotation R, and the head-to-camera pose
(R, t) is inverted to the camera-to-world matrix [R^T | -R^T t]; the first ``int(N*10/11)``
frames are the training split, the rest validation; each file holds ``focal_len``, ``cx``,
``cy`` (= w/2, h/2) and ``frames`` of ``img_id``, ``aud_id`` (= the frame number) and the
4x4 ``transform_matrix``. The image size comes from ``image_size`` in the params (written
by ``tracking``) or, for a reference-made file, from the first frame in ``ori_imgs/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import StageError
from ..fsio import atomic_file, write_manifest
from .pose_math import euler_to_matrix

log = logging.getLogger(__name__)

STAGE = "transforms"
TRANSLATION_DIVISOR = 10.0


def train_count(n_frames: int) -> int:
    """Frames in the training split (the reference's 10/11 split)."""
    return int(n_frames * 10 / 11)


def camera_to_world(euler: torch.Tensor, trans: torch.Tensor) -> np.ndarray:
    """[N, 3] euler, [N, 3] tracker translation (dm) -> [N, 4, 4] camera-to-world (metres)."""
    rot = euler_to_matrix(euler.double())
    t = trans.double() / TRANSLATION_DIVISOR
    rot_inv = rot.transpose(1, 2)
    poses = torch.eye(4, dtype=torch.float64).repeat(len(rot), 1, 1)
    poses[:, :3, :3] = rot_inv
    poses[:, :3, 3] = -(rot_inv @ t[:, :, None])[:, :, 0]
    return poses.numpy()


def _load_params(subject: str, params_path: Path) -> dict[str, torch.Tensor]:
    if not params_path.exists():
        raise StageError(subject, STAGE, f"no tracking result {params_path}", "run the tracking stage first")
    try:
        params = torch.load(params_path, map_location="cpu", weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which and how to remake it
        raise StageError(subject, STAGE, f"cannot read {params_path} ({type(err).__name__}: {err})",
                         "rerun the tracking stage") from None
    missing = [k for k in ("euler", "trans", "focal") if k not in params]
    if missing:
        raise StageError(subject, STAGE, f"{params_path} lacks {', '.join(missing)}", "rerun the tracking stage")
    euler, trans = params["euler"], params["trans"]
    if euler.ndim != 2 or euler.shape[1] != 3 or trans.shape != euler.shape:
        raise StageError(subject, STAGE, f"{params_path}: euler {tuple(euler.shape)} and trans "
                         f"{tuple(trans.shape)} must both be [N, 3]", "rerun the tracking stage")
    if not (torch.isfinite(euler).all() and torch.isfinite(trans).all() and torch.isfinite(params["focal"]).all()):
        raise StageError(subject, STAGE, f"{params_path} holds non-finite poses", "rerun the tracking stage")
    if len(euler) < 2:
        raise StageError(subject, STAGE, f"{params_path} has {len(euler)} frame(s); a train and a validation "
                         "split need at least 2", "use a longer video")
    return params


def _image_size(subject: str, params: dict[str, torch.Tensor], params_path: Path) -> tuple[int, int]:
    if "image_size" in params:
        h, w = (int(v) for v in params["image_size"].tolist())
        return h, w
    first = params_path.parent / "ori_imgs" / "0.jpg"
    import cv2

    img = cv2.imread(os.fspath(first)) if first.exists() else None
    if img is None:
        raise StageError(subject, STAGE, f"{params_path} has no image_size and {first} is not readable",
                         "rerun the tracking stage, or keep ori_imgs/ beside track_params.pt")
    return int(img.shape[0]), int(img.shape[1])


def write_transforms(subject: str, params_path: str | os.PathLike, train_path: str | os.PathLike,
                     val_path: str | os.PathLike, manifest_path: str | os.PathLike) -> dict[str, Any]:
    params_path = Path(params_path)
    params = _load_params(subject, params_path)
    h, w = _image_size(subject, params, params_path)
    poses = camera_to_world(params["euler"], params["trans"])
    n = len(poses)
    split = train_count(n)
    focal = float(params["focal"].reshape(-1)[0])
    for path, ids in ((train_path, range(0, split)), (val_path, range(split, n))):
        doc = {"focal_len": focal, "cx": float(w / 2.0), "cy": float(h / 2.0),
               "frames": [{"img_id": i, "aud_id": i, "transform_matrix": poses[i].astype(np.float32).tolist()}
                          for i in ids]}
        with atomic_file(path) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    distance = np.linalg.norm(poses[:, :3, 3], axis=1)
    log.info("transforms: %d train + %d val frames, focal %.1f px, camera %.3f-%.3f m from the head",
             split, n - split, focal, distance.min(), distance.max())
    return write_manifest(manifest_path, stage=STAGE, subject=subject, frames=n, train_frames=split,
                          val_frames=n - split, focal_len=focal, cx=w / 2.0, cy=h / 2.0,
                          camera_distance_m=dict(min=round(float(distance.min()), 4),
                                                 max=round(float(distance.max()), 4)),
                          outputs=dict(train=os.fspath(train_path), val=os.fspath(val_path)))


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="transforms_train/val.json (ER-NeRF camera poses) from track_params.pt")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (track_params.pt)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/transforms.json)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return write_transforms(subject=args.subject, params_path=data / "track_params.pt",
                            train_path=data / "transforms_train.json", val_path=data / "transforms_val.json",
                            manifest_path=args.manifest or data.parent / "manifests" / "transforms.json")
