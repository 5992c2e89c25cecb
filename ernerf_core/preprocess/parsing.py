"""Stage ``parsing``: head / neck / torso / background map of every frame.

Writes ``parsing/<i>.png`` in the reference's colour codes (parsing_codes) and a manifest
with the share of each region. Backends: ``landmarks`` (default, no download: the face mesh
from the landmarks stage plus MediaPipe selfie segmentation, see landmark_parsing) and
``bisenet`` (the reference's BiSeNet with the user's ``79999_iter.pth``).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StageError
from ..fsio import atomic_dir, write_manifest
from ..media.frames import read_rgb
from ..progress import progress
from .parsing_codes import HEAD, REGION_NAMES, write_parsing
from .subject_io import format_ranges, load_dense_landmarks, subject_frames, use_torch_threads_in_cv2

STAGE = "parsing"
BACKENDS = ("landmarks", "bisenet")
log = logging.getLogger("ernerf.parsing")


def parse_faces(
    subject: str,
    data_dir: str | os.PathLike,
    parsing_dir: str | os.PathLike,
    manifest_path: str | os.PathLike,
    backend: str = "landmarks",
    bisenet_weights: str | os.PathLike | None = None,
) -> dict[str, Any]:
    if backend not in BACKENDS:
        raise StageError(subject, STAGE, f"unknown backend {backend!r}", f"use one of {', '.join(BACKENDS)}")
    use_torch_threads_in_cv2()
    paths = subject_frames(subject, STAGE, data_dir)
    if backend == "landmarks":
        from .landmark_parsing import SelfieSegmenter, parse_frame

        mesh = load_dense_landmarks(subject, STAGE, data_dir, len(paths))
        segmenter = SelfieSegmenter()

        def regions(i: int, rgb: np.ndarray) -> np.ndarray:
            return parse_frame(rgb, mesh[i], segmenter(rgb))
    else:
        from ..device import resolve_device
        from .bisenet import bisenet_regions, load_bisenet

        net = load_bisenet(subject, STAGE, bisenet_weights, device=resolve_device("auto"))
        segmenter = None

        def regions(i: int, rgb: np.ndarray) -> np.ndarray:
            return bisenet_regions(net, rgb)

    shares = np.zeros((len(paths), len(REGION_NAMES)), np.float64)
    try:
        with atomic_dir(parsing_dir) as tmp:
            for i, path in enumerate(progress(paths, desc="parsing", unit="frame")):
                labels = regions(i, read_rgb(path))
                shares[i] = np.bincount(labels.ravel(), minlength=len(REGION_NAMES)) / labels.size
                write_parsing(tmp / f"{i}.png", labels)
    finally:
        if segmenter is not None:
            segmenter.close()

    no_head = np.flatnonzero(shares[:, HEAD] == 0)
    if len(no_head):
        log.warning("no head pixels in frames %s", format_ranges(no_head))
    mean_share = {name: round(float(shares[:, label].mean()), 4) for label, name in REGION_NAMES.items()}
    log.info("parsing: %d frames, mean region shares %s", len(paths), mean_share)
    return write_manifest(
        manifest_path,
        stage=STAGE,
        subject=subject,
        params=dict(backend=backend, bisenet_weights=os.fspath(bisenet_weights) if bisenet_weights else None),
        frames=len(paths),
        mean_region_share=mean_share,
        frames_without_head=[int(i) for i in no_head],
        colour_codes_bgr={
            "head": [255, 0, 0],
            "neck": [0, 255, 0],
            "torso": [0, 0, 255],
            "background": [255, 255, 255],
        },
    )


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="head/neck/torso/background maps (parsing/<i>.png)")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder (ori_imgs/, landmarks.npy)")
    p.add_argument("--parsing-dir", help="output folder (default: DATA_DIR/parsing)")
    p.add_argument("--manifest", help="output manifest (default: DATA_DIR/../manifests/parsing.json)")
    p.add_argument("--backend", choices=BACKENDS, default="landmarks")
    p.add_argument("--bisenet-weights", help="79999_iter.pth for --backend bisenet")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data_dir)
    return parse_faces(
        subject=args.subject,
        data_dir=data,
        parsing_dir=args.parsing_dir or data / "parsing",
        manifest_path=args.manifest or data.parent / "manifests" / "parsing.json",
        backend=args.backend,
        bisenet_weights=args.bisenet_weights,
    )
