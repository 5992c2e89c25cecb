"""Command-line pieces shared by the developer tools that train one model per variant on a
preprocessed subject (``audio_backends``, ``mouth_variants``, ``torso_variants``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_run_args(ap: argparse.ArgumentParser, unit: str, preset: str, iters: bool = True) -> None:
    """``--data``, ``--out``, ``--preset`` (default ``preset``), ``--iters`` (when ``iters``),
    ``--seed`` and ``--workers``; ``unit`` names what each run trains ("head", "torso")."""
    ap.add_argument("--data", type=Path, required=True, help="a preprocessed subject's results/<subject>/data")
    ap.add_argument("--out", type=Path, required=True, help="working folder (one subfolder per run)")
    ap.add_argument("--preset", default=preset, help=f"train.preset of every {unit} (default {preset})")
    if iters:
        ap.add_argument("--iters", type=int, default=None, help=f"{unit} steps (default: the preset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2, help=f"{unit}s trained side by side")


def subject_data(path: Path, needs: tuple[str, ...]) -> Path | None:
    """``path`` resolved, or None after a one-line message when it lacks one of ``needs``."""
    data = path.resolve()
    missing = [name for name in needs if not (data / name).exists()]
    if missing:
        print(f"{data} is not a preprocessed subject folder (no {' / '.join(missing)})", file=sys.stderr)
        return None
    return data
