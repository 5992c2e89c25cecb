"""Stage ``study_head``: one study run of the head, with its learning curve and error map.

``train_study_head`` is :func:`ernerf_core.train.head.train_head`'s run (a
:class:`~ernerf_core.train.head.HeadRun`: same steps, checkpoints, resume and model file)
under the study's folder, and afterwards writes two small files the study reads:

- ``curve.csv``: ``step, elapsed_s, val_psnr, val_loss`` of the periodic validations
  (``val_every`` steps, ``val_frames`` val frames at the training size, EMA weights), taken
  from the run's ``train_log.csv``; the learning curve of the report
- ``error_map.npz``: where the error map sends the rays at the end of training, per pixel of
  the training frames: ``density_mean`` [H, W] (sampling rate relative to uniform, averaged
  over every training frame), ``frame`` [H, W, 3] and ``density_frame`` [H, W] for the middle
  training frame, ``frame_mean`` [H, W, 3] (a mean training frame, the backdrop for
  ``density_mean``); ``enabled`` 0 and nothing else for a run without an error map.
  The density is the map's own sampling rule (:meth:`ErrorMap.probabilities`: ``1 -
  uniform`` of the rays drawn by the cells' loss, the rest uniformly), spread over each
  cell's pixels; the ``lips_share`` rays that every step adds in the mouth band are not in it.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

import numpy as np
import torch

from ..device import resolve_device
from ..fsio import atomic_file
from ..train.error_map import ErrorMap
from ..train.head import HEAD_DEFAULTS, HeadRun
from ..train.schedule import stage_settings

STAGE = "study_head"
CURVE_COLUMNS = ("step", "elapsed_s", "val_psnr", "val_loss")
MEAN_FRAMES = 16  # training frames averaged for the backdrop of the mean density
log = logging.getLogger(__name__)


def train_study_head(*, subject: str, data_dir, model_path, manifest_path, curve_path, error_map_path,
                     settings: dict, device: str = "auto") -> dict:
    """Train one variant/seed head; writes ``model_path``, ``manifest_path``, ``curve_path``, ``error_map_path``.

    ``settings["curve_points"]`` (optional): validations over the run, every ``iters / curve_points``
    steps (``val_every``)."""
    threads = torch.get_num_threads()
    settings = dict(settings)
    points = settings.pop("curve_points", None)
    if points:  # validations spread over the run's steps, its preset's when not given
        resolved = stage_settings(settings, STAGE, subject=subject, data_dir=data_dir,
                                  device_type=resolve_device(device).type)
        settings["val_every"] = max(1, int(resolved.get("iters") or HEAD_DEFAULTS["iters"]) // int(points))
    try:
        run = HeadRun(stage=STAGE, subject=subject, data_dir=data_dir, work_dir=Path(model_path).parent,
                      settings=settings, device=device)
        run.train()
        summary = run.finish(model_path, manifest_path)
        points = write_curve(run.work / "train_log.csv", curve_path)
        write_error_map(error_map_path, run.error_map, run.train_set)
    finally:
        torch.set_num_threads(threads)  # HeadRun pins one thread on a CPU
    log.info("%s: learning curve of %d points -> %s", subject, points, curve_path)
    return summary


def _finite(value: str | None) -> bool:
    try:
        return value not in (None, "") and math.isfinite(float(value))
    except ValueError:
        return False


def write_curve(train_log, curve_path) -> int:
    """The validation rows of a ``train_log.csv`` as ``curve.csv``; returns the number of points."""
    rows = []
    if Path(train_log).exists():
        with open(train_log, newline="") as fh:
            rows = [{k: r.get(k, "") for k in CURVE_COLUMNS} for r in csv.DictReader(fh) if _finite(r.get("val_psnr"))]
    with atomic_file(curve_path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return len(rows)


def pixel_density(error_map: ErrorMap, frame: int) -> np.ndarray:
    """[H, W] the rate at which ``error_map`` draws each pixel of ``frame``, relative to uniform
    (1 everywhere = uniform sampling; the mean over the image is 1)."""
    cells = error_map.probabilities(frame) / error_map.cell_pixels * (error_map.H * error_map.W)
    cells = cells.view(error_map.gh, error_map.gw)
    return cells[error_map.row_cell][:, error_map.col_cell].numpy().astype(np.float32)


def write_error_map(path, error_map: ErrorMap | None, train_set) -> None:
    """``error_map.npz`` (see the module docstring) for the trained run."""
    if error_map is None:
        arrays = {"enabled": np.array(0)}
    else:
        n = error_map.grid.shape[0]
        mean = np.zeros((error_map.H, error_map.W), np.float64)
        for f in range(n):
            mean += pixel_density(error_map, f)
        mid = n // 2
        picks = np.unique(np.linspace(0, n - 1, min(n, MEAN_FRAMES)).round().astype(int))
        frame_mean = np.mean([train_set.image(int(i)).astype(np.float32) for i in picks], axis=0)
        arrays = {"enabled": np.array(1), "density_mean": (mean / n).astype(np.float32),
                  "frame": train_set.image(mid), "density_frame": pixel_density(error_map, mid),
                  "frame_mean": frame_mean.round().astype(np.uint8), "frame_index": np.array(mid),
                  "cells": np.array([error_map.gh, error_map.gw]), "uniform_share": np.array(error_map.uniform_share)}
    with atomic_file(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
