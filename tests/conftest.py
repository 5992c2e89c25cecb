"""Shared, generated test data. Nothing here is downloaded.

Session-scoped fixtures build a small demo subject once and hand each stage the previous
stage's output, so every test of a stage runs on real pipeline data without redoing the
stages before it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# 2 cores: keep BLAS/torch from oversubscribing when tests run next to each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ERNERF_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDIA = REPO.parent / "shared" / "media"

# The small demo used across the suite: big enough for face detection, small enough to be fast.
DEMO_SIZE = 192
DEMO_SECONDS = 3.0
NORMALIZED_RESOLUTION = 128


@pytest.fixture(scope="session")
def demo_clip(tmp_path_factory) -> dict[str, Path]:
    """A 3 s demo subject video with its ground truth (ernerf_core.demo)."""
    from ernerf_core.demo import make_demo_subject

    out = tmp_path_factory.mktemp("demo")
    paths = {
        "video": out / "demo.mp4",
        "truth": out / "demo_truth.npz",
        "drive": out / "drive.wav",
        "manifest": out / "demo.json",
    }
    make_demo_subject(video_path=paths["video"], truth_path=paths["truth"],
                      drive_path=paths["drive"], manifest_path=paths["manifest"],
                      size=DEMO_SIZE, seconds=DEMO_SECONDS, seed=0)
    return paths


@pytest.fixture(scope="session")
def normalized_subject(demo_clip, tmp_path_factory) -> Path:
    """The demo clip after `normalize`: returns the subject's data folder."""
    from ernerf_core.preprocess.normalize import normalize

    data = tmp_path_factory.mktemp("subject") / "data"
    normalize(subject="demo", video=demo_clip["video"], frames_dir=data / "ori_imgs",
              audio_path=data / "aud.wav", manifest_path=data.parent / "manifests" / "normalize.json",
              resolution=NORMALIZED_RESOLUTION, crop_scale=2.4, min_seconds=2.0)
    return data


def shared_media(name: str) -> Path:
    """A real clip from ../shared/media; skips the test when it is not there."""
    path = SHARED_MEDIA / name
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path
