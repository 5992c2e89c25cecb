"""Stage ``preview``: a contact sheet for a person to check landmarks and parsing at a glance.

A few frames spread over the clip, each shown twice: with the face mesh (grey dots) and the
iBUG-68 ``.lms`` contours (yellow), and with the parsing regions tinted over it (head blue,
neck green, torso red: the reference's codes as an RGB viewer shows them).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from ..errors import StageError
from ..media.frames import read_rgb, write_png
from .parsing_codes import BACKGROUND, CODES_BGR, REGION_NAMES, read_parsing
from .subject_io import subject_frames

STAGE = "preview"
TILE = 256
SHOWN_FRAMES = 6
# iBUG-68 contours drawn as lines: (first, last, closed).
IBUG68_CONTOURS = [
    (0, 16, False),
    (17, 21, False),
    (22, 26, False),
    (27, 30, False),
    (31, 35, False),
    (36, 41, True),
    (42, 47, True),
    (48, 59, True),
    (60, 67, True),
]


def _landmark_tile(rgb: np.ndarray, mesh: np.ndarray | None, lms: np.ndarray, scale: float) -> np.ndarray:
    tile = cv2.resize(rgb, (TILE, TILE), interpolation=cv2.INTER_AREA)
    if mesh is not None:
        for x, y in np.round(mesh[:, :2] * scale).astype(int):
            cv2.circle(tile, (int(x), int(y)), 0, (200, 200, 200), -1)
    pts = np.round(lms[:, :2] * scale).astype(np.int32)
    for first, last, closed in IBUG68_CONTOURS:
        cv2.polylines(tile, [pts[first : last + 1]], closed, (255, 220, 0), 1, cv2.LINE_AA)
    for x, y in pts:
        cv2.circle(tile, (int(x), int(y)), 1, (255, 80, 0), -1)
    return tile


def _parsing_tile(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    colours = CODES_BGR[labels][..., ::-1].astype(np.float32)  # as an RGB viewer shows the file
    blend = np.where(
        (labels == BACKGROUND)[..., None], 0.25 * rgb + 0.75 * 255, 0.45 * rgb + 0.55 * colours
    ).astype(np.uint8)
    return cv2.resize(blend, (TILE, TILE), interpolation=cv2.INTER_NEAREST)


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def _legend(width: int) -> np.ndarray:
    strip = np.full((24, width, 3), 255, np.uint8)
    x = 6
    for label, name in REGION_NAMES.items():
        colour = tuple(int(c) for c in CODES_BGR[label][::-1])
        cv2.rectangle(strip, (x, 6), (x + 12, 18), colour, -1)
        cv2.rectangle(strip, (x, 6), (x + 12, 18), (0, 0, 0), 1)
        cv2.putText(strip, name, (x + 16, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        x += 24 + 8 * len(name)
    return strip


def make_preview(subject: str, data_dir: str | os.PathLike, sheet_path: str | os.PathLike) -> None:
    data_dir = Path(data_dir)
    paths = subject_frames(subject, STAGE, data_dir)
    dense_path = data_dir / "landmarks.npy"
    mesh = np.load(dense_path, mmap_mode="r") if dense_path.exists() else None
    shown = np.unique(np.linspace(0, len(paths) - 1, SHOWN_FRAMES).round().astype(int))
    rows = []
    for i in shown:
        lms_path, parsing_path = data_dir / "lms" / f"{i}.lms", data_dir / "parsing" / f"{i}.png"
        for needed, stage in ((lms_path, "landmarks"), (parsing_path, "parsing")):
            if not needed.exists():
                raise StageError(subject, STAGE, f"no {needed}", f"run the {stage} stage first")
        rgb = read_rgb(paths[i])
        scale = TILE / rgb.shape[1]
        left = _landmark_tile(rgb, None if mesh is None else np.asarray(mesh[i]), np.loadtxt(lms_path), scale)
        right = _parsing_tile(rgb, read_parsing(parsing_path))
        rows.append(np.concatenate([_caption(left, f"frame {i}"), right], axis=1))
    # Two frames (four tiles) per row of the sheet.
    if len(rows) % 2:
        rows.append(np.full_like(rows[0], 255))
    sheet = np.concatenate([np.concatenate(rows[k : k + 2], axis=1) for k in range(0, len(rows), 2)], axis=0)
    sheet = np.concatenate([sheet, _legend(sheet.shape[1])], axis=0)
    write_png(sheet_path, sheet)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(STAGE, help="contact sheet with landmarks and parsing on a few frames")
    p.add_argument("--subject", required=True)
    p.add_argument("--data-dir", required=True, help="the subject's data folder")
    p.add_argument("--sheet", help="output PNG (default: DATA_DIR/../preview/contact_sheet.png)")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> None:
    data = Path(args.data_dir)
    make_preview(
        subject=args.subject,
        data_dir=data,
        sheet_path=args.sheet or data.parent / "preview" / "contact_sheet.png",
    )
