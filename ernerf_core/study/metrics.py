"""Stage ``study_metrics``: one study run's trained head measured on the val split.

``measure_study_run`` renders the first ``eval_frames`` val frames (0 = all; contiguous, so
the lip-sync numbers can line the mouth up with the audio) with the head over its training
background (the torso image over ``bc.jpg``, as the head is trained and validated), at
``1/downscale`` of the frame size, and writes ``metrics.json``:

- image quality: ``psnr`` (whole frame), ``psnr_head`` (landmarks' face box), ``ssim``,
  ``lpips`` (null and ``lpips_unavailable`` when the AlexNet weights are not on this machine)
- mouth: ``lmd`` (mouth landmarks, mean-centred, pixels at the measured size) and
  ``lipsync`` (render_test's numbers, from :class:`ernerf_core.render.test_split.MouthTracks`:
  ``mouth_corr_truth``, ``audio_envelope_corr``, ...)
- cost: ``train_seconds`` (all training stages of the run, validation excluded),
  ``head_steps``, ``steps_per_s`` (head steps per training second), ``model_mb`` (the
  model file) and ``parameters``
- ``settings``: the run's loss, error map, seed and grids, from the model file

The head alone is measured (not the portrait): every variant shares the torso, so the
differences between variants are the head's.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..device import resolve_device
from ..errors import StageError
from ..fsio import read_json, write_json
from ..metrics.lpips_metric import load_lpips_metric
from ..metrics.psnr import psnr
from ..metrics.ssim import ssim
from ..model.io import load_head
from ..model.renderer import render_image
from ..progress import progress
from ..render.test_split import MouthTracks
from ..train.dataset import FEATURE_FILES, SubjectDataset

STAGE = "study_metrics"
FPS = 25
log = logging.getLogger(__name__)


def _load(subject: str, model_path: Path, device: torch.device):
    if not model_path.exists():
        raise StageError(subject, STAGE, f"{model_path} is missing", "run study_head (and study_lips) first")
    try:
        return load_head(model_path, device)
    except (ValueError, KeyError, RuntimeError) as err:
        raise StageError(subject, STAGE, f"{model_path} is not a head model ({err})",
                         "delete it and rerun the study") from None


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if np.isfinite(x)]  # identical frames give an infinite PSNR
    return float(np.mean(xs)) if xs else None


def _settings_summary(settings: dict) -> dict:
    grids = (settings.get("model") or {}).get("grids") or {}
    return {"loss": settings.get("loss"), "huber_delta": settings.get("huber_delta"),
            "error_map": settings.get("error_map"), "seed": settings.get("seed"), "grids": grids}


def _cost(manifests: list, model_path: Path, model) -> dict:
    runs = [read_json(p) for p in manifests]
    seconds = sum(float(r.get("train_seconds") or 0.0) for r in runs)
    head = runs[0]
    head_steps, head_s = int(head.get("steps") or 0), float(head.get("train_seconds") or 0.0)
    return {"train_seconds": seconds, "head_steps": head_steps,
            "steps_per_s": head_steps / head_s if head_s > 0 else None,
            "stages": [{"stage": r.get("stage"), "steps": r.get("steps"), "train_seconds": r.get("train_seconds")}
                       for r in runs],
            "model_mb": model_path.stat().st_size / 1e6,
            "parameters": int(sum(p.numel() for p in model.parameters()))}


def _val_audio(data_dir: Path, first_aud_id: int, n_frames: int) -> tuple[np.ndarray, int]:
    wav, sr = sf.read(data_dir / "aud.wav", dtype="float32", always_2d=True)
    start = first_aud_id / FPS
    return wav[int(round(start * sr)): int(round((start + n_frames / FPS) * sr)), 0], sr


def measure_study_run(*, subject: str, data_dir, model_path, manifests: list, metrics_path, variant: str,
                      seed: int, downscale: float | None = None, eval_frames: int = 0,
                      device: str = "auto") -> dict:
    """Measure the head ``model_path`` on the val split of ``data_dir``; writes ``metrics_path``.

    ``manifests``: the run's training manifests, head first (then lips), for its cost.
    ``downscale`` None: the size the head was trained at."""
    dev = resolve_device(device)
    model_path, data_dir = Path(model_path), Path(data_dir)
    if downscale is not None and downscale < 1:
        raise StageError(subject, STAGE, f"study.downscale {downscale} is below 1",
                         "use 1 (the frame size) or more (smaller, faster frames)")
    model = _load(subject, model_path, dev)
    meta = model.meta
    if downscale is None:
        downscale = float(meta["train"]["settings"].get("downscale") or 1.0)
    backend = meta["audio"]["backend"]
    if backend not in FEATURE_FILES:
        raise StageError(subject, STAGE, f"{model_path} was trained on unknown audio features '{backend}'",
                         "rerun the study")
    val = SubjectDataset(data_dir, "val", subject=subject, stage=STAGE,
                         features_path=data_dir / FEATURE_FILES[backend], downscale=downscale, cache_mb=64)
    if [int(x) for x in val.full_size] != [int(meta["data"]["H"]), int(meta["data"]["W"])]:
        raise StageError(subject, STAGE, f"the val frames are {val.full_size[1]}x{val.full_size[0]} but the head "
                         f"was trained on {meta['data']['W']}x{meta['data']['H']}",
                         "rerun the study on this subject's data")
    n = len(val) if eval_frames <= 0 else min(int(eval_frames), len(val))
    wav, sr = _val_audio(data_dir, int(val.aud_ids_raw[0]), n)
    lpips_metric, lpips_reason = load_lpips_metric(dev)
    psnrs, head_psnrs, ssims, lpipss = [], [], [], []
    tracks = MouthTracks()
    render_seconds = 0.0
    try:
        for k in progress(range(n), desc=f"{subject} {variant} seed {seed}", unit="frame"):
            t0 = time.perf_counter()
            out = render_image(model, val.poses[k], val.intrinsics, val.H, val.W, val.audio_window(k),
                               float(val.eye[k]), val.background(k))
            frame = (out["image"].cpu().numpy() * 255).round().astype(np.uint8)
            render_seconds += time.perf_counter() - t0
            truth = val.image(k)
            psnrs.append(psnr(frame, truth))
            r0, r1, c0, c1 = val.face_rect(k)
            if r1 > r0 and c1 > c0:
                head_psnrs.append(psnr(frame[r0:r1, c0:c1], truth[r0:r1, c0:c1]))
            ssims.append(ssim(frame, truth))
            if lpips_metric is not None:
                lpipss.append(lpips_metric.distance(frame, truth))
            tracks.add(frame, truth)
        mouth = tracks.results(wav, sr)
    finally:
        tracks.close()
    # per-frame series ({"render": [...], "truth": [...]}, e.g. mouth_opening) go under per_frame
    series = {k: v for k, v in mouth.items() if isinstance(v, dict) and set(v) == {"render", "truth"}}
    metrics = {
        "subject": subject, "variant": variant, "seed": int(seed), "frames": n, "size": [val.H, val.W],
        "psnr": _mean(psnrs), "psnr_head": _mean(head_psnrs), "ssim": _mean(ssims),
        "lpips": _mean(lpipss) if lpipss else None, "lpips_unavailable": lpips_reason,
        **{k: v for k, v in mouth.items() if k not in series},
        "render_fps": n / max(render_seconds, 1e-9),
        **_cost(manifests, model_path, model),
        "settings": _settings_summary(meta["train"]["settings"]),
        "per_frame": {"psnr": [p if math.isfinite(p) else None for p in psnrs], "ssim": ssims, **series},
    }
    write_json(metrics_path, metrics)
    fmt = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    log.info("%s %s seed %d: %d val frames %dx%d, PSNR %s dB, SSIM %s, LMD %s px, %.0f s training", subject, variant,
             seed, n, val.W, val.H, fmt(metrics["psnr"], ".2f"), fmt(metrics["ssim"], ".4f"),
             fmt(metrics.get("lmd"), ".2f"), metrics["train_seconds"])
    return {k: v for k, v in metrics.items() if k != "per_frame"}
