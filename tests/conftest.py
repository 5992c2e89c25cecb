"""Shared, generated test data. Nothing here is downloaded.

Session-scoped fixtures build a small demo subject once and hand each stage the previous
stage's output, so every test of a stage runs on real pipeline data without redoing the
stages before it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

# 2 cores: keep BLAS/torch from oversubscribing when tests run next to each other.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("ERNERF_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]

# tests/cluster/ is `make test-cluster` (it installs and starts a one-node SLURM), never a
# plain test run.
collect_ignore = [] if os.environ.get("ERNERF_CLUSTER_TEST") == "1" else ["cluster"]
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


@pytest.fixture(scope="session")
def face_subject(normalized_subject, tmp_path_factory) -> Path:
    """A copy of the normalised demo subject run through every face stage (landmarks,
    parsing, background, torso_gt, blink): returns its data folder."""
    import shutil

    from ernerf_core.preprocess.background import extract_background
    from ernerf_core.preprocess.blink import extract_blink
    from ernerf_core.preprocess.landmarks import detect_landmarks
    from ernerf_core.preprocess.parsing import parse_faces
    from ernerf_core.preprocess.torso_gt import make_torso_and_gt

    root = tmp_path_factory.mktemp("face_subject")
    data, manifests = root / "data", root / "manifests"
    shutil.copytree(normalized_subject / "ori_imgs", data / "ori_imgs")
    manifests.mkdir(parents=True)
    shutil.copy(normalized_subject.parent / "manifests" / "normalize.json", manifests / "normalize.json")
    detect_landmarks(
        subject="demo",
        data_dir=data,
        dense_path=data / "landmarks.npy",
        manifest_path=manifests / "landmarks.json",
    )
    parse_faces(
        subject="demo", data_dir=data, parsing_dir=data / "parsing", manifest_path=manifests / "parsing.json"
    )
    extract_background(
        subject="demo", data_dir=data, bc_path=data / "bc.jpg", manifest_path=manifests / "background.json"
    )
    make_torso_and_gt(
        subject="demo",
        data_dir=data,
        gt_dir=data / "gt_imgs",
        torso_dir=data / "torso_imgs",
        manifest_path=manifests / "torso_gt.json",
    )
    extract_blink(
        subject="demo", data_dir=data, au_path=data / "au.csv", manifest_path=manifests / "blink.json"
    )
    return data


def truth_in_frames(demo_clip: dict, data: Path) -> tuple[dict, np.ndarray]:
    """The demo truth and its landmarks mapped into the normalised frames [N, 478, 2]."""
    truth = dict(np.load(demo_clip["truth"]))
    norm = json.loads((data.parent / "manifests" / "normalize.json").read_text())
    crop = norm["crop"]
    points = (truth["landmarks_2d"] - [crop["x"], crop["y"]]) * norm["resolution"] / crop["size"]
    return truth, points
