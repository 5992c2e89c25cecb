"""Render speed of a trained portrait (head + torso) on this machine, at 128^2 and 512^2.

The portrait is trained here, briefly, on the synthetic subject of the tests (128 x 128,
24 frames): the head with ``train_head`` (so its occupancy grid has carved the empty space
a real head leaves), then the torso with ``train_torso``, joined by the ``portrait`` stage.
Frames are rendered exactly as
``render_test`` / ``render_audio`` render them (:func:`ernerf_core.model.portrait.render_frame`;
512^2 renders the same model with scaled intrinsics). Baseline, in the same process on the
same frames: the acceleration grids switched off (every head cell marked occupied, the torso
evaluated at every pixel), i.e. what the occupancy and alpha grids save. Rows give frames
per second and the speed-up (ratio), with torch's default threads (all cores), as the render
stages run.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

FRAMES = {128: 6, 512: 2}


def _portrait(root: Path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from synthetic_subject import make_synthetic_subject

    from ernerf_core.model.portrait import load_portrait
    from ernerf_core.train.head import train_head
    from ernerf_core.train.portrait import assemble_portrait
    from ernerf_core.train.torso import train_torso

    subj = make_synthetic_subject(root, n_frames=24, size=128, feature_dim=16)
    train_head(subject="bench", data_dir=subj.data_dir, model_path=root / "head" / "model.pt",
               manifest_path=root / "manifests" / "train_head.json", device="cpu",
               settings={"iters": 200, "num_rays": 2048, "downscale": 1.0, "val_every": 0, "final_val_frames": 1})
    train_torso(subject="bench", data_dir=subj.data_dir, model_path=root / "torso" / "model.pt",
                manifest_path=root / "manifests" / "train_torso.json", device="cpu",
                settings={"iters": 100, "num_rays": 2048, "downscale": 1.0, "final_val_frames": 1})
    assemble_portrait(subject="bench", data_dir=subj.data_dir, head_path=root / "head" / "model.pt",
                      torso_path=root / "torso" / "model.pt", model_path=root / "portrait" / "model.pt",
                      manifest_path=root / "manifests" / "portrait.json", val_frames=1, device="cpu")
    return load_portrait(root / "portrait" / "model.pt"), subj


def _fps(portrait, size: int, n: int, grids: bool) -> float:
    from ernerf_core.model.audio import audio_window
    from ernerf_core.model.portrait import render_frame

    feats = torch.zeros(30, portrait.head.config.audio_in, portrait.head.config.audio_window)
    occupied = portrait.head.occupancy.occupied.clone()
    if not grids:
        portrait.head.occupancy.occupied.fill_(True)
    try:
        render_frame(portrait, portrait.poses[0], audio_window(feats, 0), 0.0, size=(size, size),
                     use_alpha_grid=grids)  # warm-up
        start = time.perf_counter()
        for i in range(n):
            render_frame(portrait, portrait.poses[i % len(portrait.poses)], audio_window(feats, i), 0.0,
                         size=(size, size), use_alpha_grid=grids)
        return n / (time.perf_counter() - start)
    finally:
        portrait.head.occupancy.occupied.copy_(occupied)


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        portrait, _ = _portrait(Path(tmp))
        occupied_share = float(portrait.head.occupancy.occupied.float().mean())
        torso_share = float((portrait.torso.alpha_grid > portrait.torso.alpha_threshold()).float().mean())
        for size, n in FRAMES.items():
            fast, slow = _fps(portrait, size, n, True), _fps(portrait, size, n, False)
            rows.append({"case": f"render head+torso {size}x{size}", "fps": round(fast, 3),
                         "baseline": "occupancy + alpha grids off", "baseline_fps": round(slow, 3),
                         "ratio": round(fast / slow, 2), "threads": torch.get_num_threads(),
                         "occupied_cells": round(occupied_share, 4), "torso_alpha_cells": round(torso_share, 4)})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
