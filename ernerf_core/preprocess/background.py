"""Stage ``background``: the static background image ``bc.jpg`` (the reference's algorithm).

On every 20th frame, each pixel's distance to the nearest person pixel (any non-background
parsing region) is measured. A pixel more than 5 px from the person in some sampled frame
takes its colour from the frame where it was farthest from the person; every other pixel
(always near or behind the person) copies the nearest such pixel.
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import StageError
from ..fsio import write_manifest
from ..media.frames import read_rgb, write_jpg
from ..progress import progress
from .parsing_codes import BACKGROUND, read_parsing
from .subject_io import subject_frames, use_torch_threads_in_cv2

STAGE = "background"
FRAME_STRIDE = 20  # reference: every 20th frame
CLEAR_PX = 5.0  # reference: a pixel this far from the person shows background
log = logging.getLogger("ernerf.background")


def extract_background(
    subject: str, data_dir: str | os.PathLike, bc_path: str | os.PathLike, manifest_path: str | os.PathLike
) -> dict[str, Any]:
    use_torch_threads_in_cv2()
    data_dir = Path(data_dir)
    paths = subject_frames(subject, STAGE, data_dir)[::FRAME_STRIDE]
    parsing_dir = data_dir / "parsing"
    best = None  # [H, W] largest distance to the person so far
    bc = None  # [H, W, 3] colour of each pixel in the frame where it was farthest
    for path in progress(paths, desc="background", unit="frame"):
        parsing_path = parsing_dir / f"{path.stem}.png"
        if not parsing_path.exists():
            raise StageError(subject, STAGE, f"no parsing {parsing_path}", "run the parsing stage first")
        background = read_parsing(parsing_path) == BACKGROUND
        rgb = read_rgb(path)
        if background.shape != rgb.shape[:2]:
            raise StageError(
                subject,
                STAGE,
                f"{parsing_path} is {background.shape[::-1]}, its frame is {rgb.shape[1::-1]}",
                "rerun the parsing stage",
            )
        # Distance of every pixel to the nearest person pixel (0 on the person).
        dist = (
            ndimage.distance_transform_edt(background)
            if not background.all()
            else np.full(background.shape, np.inf)
        )
        if best is None:
            best, bc = dist, rgb.copy()
        else:
            farther = dist > best  # ties keep the earlier frame
            best[farther] = dist[farther]
            bc[farther] = rgb[farther]
    clear = best > CLEAR_PX  # [H, W]
    if not clear.any():
        raise StageError(
            subject,
            STAGE,
            f"no pixel is more than {CLEAR_PX:g} px from the person in any of "
            f"the frames {', '.join(p.stem for p in paths)}",
            "use a video where some background is visible around the person (crop less tightly: "
            "raise preprocess.crop_scale)",
        )
    # Pixels never clear copy the nearest clear pixel (nearest-neighbour fill).
    _, (near_r, near_c) = ndimage.distance_transform_edt(~clear, return_indices=True)
    bc = bc[near_r, near_c]
    write_jpg(bc_path, bc)
    share = float(clear.mean())
    log.info(
        "background: %d sampled frames, %.1f%% of pixels seen clear of the person", len(paths), 100 * share
    )
    return write_manifest(
        manifest_path,
        stage=STAGE,
        subject=subject,
        params=dict(frame_stride=FRAME_STRIDE, clear_px=CLEAR_PX),
        sampled_frames=[int(p.stem) for p in paths],
        clear_share=round(share, 4),
        resolution=[int(bc.shape[1]), int(bc.shape[0])],
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="static background image bc.jpg")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (ori_imgs/, parsing/)")
    p.add_argument("--bc", help="output image (default: DATA_DIR/bc.jpg)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/background.json)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return extract_background(
        subject=args.subject,
        data_dir=data,
        bc_path=args.bc or data / "bc.jpg",
        manifest_path=args.manifest or data.parent / "manifests" / "background.json",
    )
