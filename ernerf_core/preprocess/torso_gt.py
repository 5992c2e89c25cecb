"""Stage ``torso_gt``: ``gt_imgs/<i>.jpg`` and ``torso_imgs/<i>.png`` (the reference's algorithm).

gt: the frame with its background pixels replaced by ``bc.jpg``. torso: RGBA of neck and
torso only, the head cut away; because the head hides the top of the neck and torso, both
are continued upwards under the head ("vertical inpainting": each column's top colour is
repeated upwards, slightly darkened, and the neck's fill is blurred), so the torso model
never sees a hole where the head was.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from scipy.ndimage import binary_dilation

from ..errors import StageError
from ..fsio import atomic_dir, write_manifest
from ..media.frames import read_rgb, write_jpg, write_png
from ..progress import progress
from .parsing_codes import BACKGROUND, HEAD, NECK, TORSO, read_parsing
from .subject_io import subject_frames, use_torch_threads_in_cv2

STAGE = "torso_gt"
TORSO_FILL_ROWS = 9  # reference: torso continued 8 px (+ its top row) under the head
NECK_FILL_ROWS = 48  # reference: neck continued 48 px under the head ...
NECK_PUSH_DOWN = 4  # ... from up to 4 px below its top edge (the edge is noisy)
DARKEN = 0.98  # per row, so the fill fades into shadow under the chin
log = logging.getLogger("ernerf.torso_gt")


def _fill_up(
    image: np.ndarray, region: np.ndarray, head: np.ndarray, rows: int, push_down: int = 0
) -> np.ndarray:
    """Continue ``region`` upwards into the head, column by column; paints ``image`` in place.

    For each column whose topmost ``region`` pixel lies right under the head, the colour
    ``push_down`` px below that top (at most the column's region height) is repeated over
    ``rows`` rows up to and including that pixel, darkened by DARKEN per row.
    Returns the painted mask [H, W].
    """
    painted = np.zeros(region.shape, bool)
    ys, xs = np.nonzero(region)
    if len(ys) == 0:
        return painted
    order = np.lexsort((ys, xs))  # by column, then top to bottom
    ys, xs = ys[order], xs[order]
    cols, first, counts = np.unique(xs, return_index=True, return_counts=True)
    top = ys[first]
    under_head = (top > 0) & head[np.maximum(top - 1, 0), cols]
    cols, top, counts = cols[under_head], top[under_head], counts[under_head]
    if len(cols) == 0:
        return painted
    top = top + np.minimum(counts - 1, push_down)
    colours = image[top, cols].astype(np.float32)  # [m, 3]
    steps = np.arange(rows + push_down + 1)[:, None]  # [L, 1]
    fill_y = top[None, :] - steps  # [L, m]
    fill_x = np.broadcast_to(cols[None, :], fill_y.shape)
    fill_rgb = colours[None] * (DARKEN**steps)[..., None]  # [L, m, 3]
    inside = fill_y >= 0  # the reference wrapped around the image top
    image[fill_y[inside], fill_x[inside]] = fill_rgb[inside].astype(np.uint8)
    painted[fill_y[inside], fill_x[inside]] = True
    return painted


def torso_and_gt(rgb: np.ndarray, labels: np.ndarray, bc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One frame: (gt RGB [H, W, 3], torso RGBA [H, W, 4]), all uint8.

    rgb [H, W, 3] frame; labels [H, W] parsing regions; bc [H, W, 3] background.
    """
    head, neck, torso = labels == HEAD, labels == NECK, labels == TORSO
    background = labels == BACKGROUND
    gt = rgb.copy()
    gt[background] = bc[background]

    image = gt.copy()
    image[head] = bc[head]
    torso_fill = _fill_up(image, torso, head, TORSO_FILL_ROWS - 1)
    # The neck grows 3 px upwards first, so its top reaches under the head's edge pixels.
    neck = binary_dilation(neck, structure=np.array([[0, 1, 0]] * 3, bool), iterations=3)
    colours_from = gt.copy()  # the neck colour is taken from the frame, not from earlier fills
    neck_fill = _fill_up(colours_from, neck, head, NECK_FILL_ROWS, NECK_PUSH_DOWN)
    image[neck_fill] = colours_from[neck_fill]
    # Hides the vertical streaks of the fill; sigma 4 as in the reference (its 3rd argument).
    blurred = cv2.GaussianBlur(image, (5, 5), 4)
    image[neck_fill] = blurred[neck_fill]

    keep = neck | torso | neck_fill | torso_fill
    image[~keep] = 0
    alpha = np.where(keep, 255, 0).astype(np.uint8)
    return gt, np.concatenate([image, alpha[..., None]], axis=-1)


def make_torso_and_gt(
    subject: str,
    data_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    torso_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
) -> dict[str, Any]:
    use_torch_threads_in_cv2()
    data_dir = Path(data_dir)
    paths = subject_frames(subject, STAGE, data_dir)
    bc_path = data_dir / "bc.jpg"
    if not bc_path.exists():
        raise StageError(subject, STAGE, f"no background image {bc_path}", "run the background stage first")
    bc = read_rgb(bc_path)
    torso_share = np.zeros(len(paths))
    with atomic_dir(gt_dir) as gt_tmp, atomic_dir(torso_dir) as torso_tmp:
        for i, path in enumerate(progress(paths, desc="torso_gt", unit="frame")):
            parsing_path = data_dir / "parsing" / f"{i}.png"
            if not parsing_path.exists():
                raise StageError(subject, STAGE, f"no parsing {parsing_path}", "run the parsing stage first")
            rgb, labels = read_rgb(path), read_parsing(parsing_path)
            if not (rgb.shape[:2] == labels.shape == bc.shape[:2]):
                raise StageError(
                    subject,
                    STAGE,
                    f"frame {i}: image {rgb.shape[1::-1]}, parsing "
                    f"{labels.shape[::-1]} and bc.jpg {bc.shape[1::-1]} differ in size",
                    "rerun parsing and background",
                )
            gt, torso = torso_and_gt(rgb, labels, bc)
            write_jpg(gt_tmp / f"{i}.jpg", gt)
            write_png(torso_tmp / f"{i}.png", torso)
            torso_share[i] = float((torso[..., 3] > 0).mean())
    log.info("torso_gt: %d frames, mean torso alpha coverage %.1f%%", len(paths), 100 * torso_share.mean())
    return write_manifest(
        manifest_path,
        stage=STAGE,
        subject=subject,
        params=dict(
            torso_fill_rows=TORSO_FILL_ROWS,
            neck_fill_rows=NECK_FILL_ROWS,
            neck_push_down=NECK_PUSH_DOWN,
            darken=DARKEN,
        ),
        frames=len(paths),
        mean_torso_coverage=round(float(torso_share.mean()), 4),
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        STAGE, help="gt_imgs/ (background replaced) and torso_imgs/ (RGBA, head removed)"
    )
    p.add_argument("--subject", required=True)
    p.add_argument(
        "--data-dir", required=True, help="the subject's data folder (ori_imgs/, parsing/, bc.jpg)"
    )
    p.add_argument("--gt-dir", help="output folder (default: DATA_DIR/gt_imgs)")
    p.add_argument("--torso-dir", help="output folder (default: DATA_DIR/torso_imgs)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/torso_gt.json)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return make_torso_and_gt(
        subject=args.subject,
        data_dir=data,
        gt_dir=args.gt_dir or data / "gt_imgs",
        torso_dir=args.torso_dir or data / "torso_imgs",
        manifest_path=args.manifest or data.parent / "manifests" / "torso_gt.json",
    )
