"""Stage landmarks: MediaPipe mesh on every frame, the iBUG-68 .lms, gaps and several faces.

The demo subject (tests/conftest.py) gives ground truth; bad input is made here from its
frames (blank frames inserted, two faces composed on one canvas).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import shared_media, truth_in_frames
from skimage import data as skdata

from ernerf_core.errors import StageError
from ernerf_core.media.face_mesh import MeshTracker, choose_face
from ernerf_core.media.frames import frame_paths, read_rgb, write_jpg
from ernerf_core.preprocess.landmarks import detect_landmarks, fill_gaps
from ernerf_core.preprocess.mesh_indices import IBUG68_FROM_MESH, IBUG68_MIRROR, ibug68_from_mesh


def run(data: Path, **kw) -> dict:
    return detect_landmarks(
        subject="t",
        data_dir=data,
        dense_path=data / "landmarks.npy",
        manifest_path=data.parent / "manifests" / "landmarks.json",
        **kw,
    )


def make_subject(root: Path, frames: list[np.ndarray]) -> Path:
    data = root / "data"
    for i, rgb in enumerate(frames):
        write_jpg(data / "ori_imgs" / f"{i}.jpg", rgb)
    return data


# ---- the demo subject ------------------------------------------------------------------


def test_landmarks_on_every_demo_frame_match_the_truth(face_subject, demo_clip):
    manifest = json.loads((face_subject.parent / "manifests" / "landmarks.json").read_text())
    truth, points = truth_in_frames(demo_clip, face_subject)
    mesh = np.load(face_subject / "landmarks.npy")
    n = len(truth["blink"])
    assert mesh.dtype == np.float32 and mesh.shape == (n, 478, 3)
    assert manifest["detected"] == [True] * n and manifest["interpolated_ranges"] == []
    err = np.linalg.norm(mesh[:, :, :2] - points, axis=-1)  # [N, 478] px at 128x128
    assert err.mean() < 2.0, err.mean()
    assert err.mean(1).max() < 3.5, err.mean(1).max()
    # z is in pixels like x: the face's depth extent is a sizeable share of its width
    depth = np.ptp(mesh[:, :, 2], axis=1) / np.ptp(mesh[:, :, 0], axis=1)
    assert 0.3 < depth.mean() < 1.5


def test_lms_files_are_the_reference_format_and_the_mesh_subset(face_subject):
    mesh = np.load(face_subject / "landmarks.npy")
    lms_paths = frame_paths(face_subject / "lms", ".lms")
    assert frame_paths(face_subject / "ori_imgs", ".lms") == []  # normalize's folder stays its own
    assert len(lms_paths) == len(mesh)
    first = lms_paths[0].read_text().splitlines()
    assert len(first) == 68 and all(len(line.split(" ")) == 2 for line in first)
    for i in (0, len(mesh) - 1):
        lms = np.loadtxt(lms_paths[i])
        np.testing.assert_allclose(lms, mesh[i, IBUG68_FROM_MESH, :2], atol=1e-4)


def ibug_geometry_problems(p: np.ndarray) -> list[str]:
    """What is wrong with a frontal face's 68 points [68, 2] (image coordinates, y down)."""
    problems = []
    # Undo the head's roll: the eyes' centres on a horizontal line.
    dx, dy = p[42:48].mean(0) - p[36:42].mean(0)
    c, s = np.cos(-np.arctan2(dy, dx)), np.sin(-np.arctan2(dy, dx))
    p = (p - p.mean(0)) @ np.array([[c, s], [-s, c]])
    jaw = p[0:17]
    tol = 0.02 * np.ptp(jaw[:, 0])  # the jaw's ends run vertically: allow sub-pixel wobble there
    if not (
        np.all(np.diff(jaw[:, 0]) > -tol) and jaw[0, 0] < jaw[4, 0] < jaw[8, 0] < jaw[12, 0] < jaw[16, 0]
    ):
        problems.append("jaw not ordered left to right")
    if not (
        np.all(np.diff(jaw[:9, 1]) > -tol)
        and np.all(np.diff(jaw[8:, 1]) < tol)
        and jaw[8, 1] >= jaw[:, 1].max() - tol
    ):
        problems.append("jaw does not run down to the chin (8) and back up")
    for name, (a, b) in {"right brow": (17, 22), "left brow": (22, 27), "nostrils": (31, 36)}.items():
        if not np.all(np.diff(p[a:b, 0]) > 0):
            problems.append(f"{name} not left to right")
    if not np.all(np.diff(p[27:31, 1]) > 0):
        problems.append("nose bridge not top to tip")
    for name, (a, b) in {
        "right eye": (36, 42),
        "left eye": (42, 48),
        "outer lips": (48, 60),
        "inner lips": (60, 68),
    }.items():
        ring = p[a:b]
        angles = np.unwrap(np.arctan2(*(ring - ring.mean(0)).T[::-1]))
        if not np.all(np.diff(angles) > 0) or not np.pi < angles[-1] - angles[0] < 2 * np.pi:
            problems.append(f"{name} not once around clockwise (in the image)")
    if not (p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]):
        problems.append("eye corners out of order")
    if not (p[27:36, 1].max() < p[48:68, 1].min() and p[48:68, 1].max() < p[8, 1]):
        problems.append("nose, mouth and chin not stacked top to bottom")
    mouth = cv2.pointPolygonTest(
        p[48:60].astype(np.float32), tuple(float(v) for v in p[60:68].mean(0)), False
    )
    if mouth <= 0:
        problems.append("inner lips not inside the outer lips")
    return problems


def test_ibug68_map_is_anatomically_ordered(face_subject):
    mesh = np.load(face_subject / "landmarks.npy")
    for i in (0, len(mesh) // 2, len(mesh) - 1):
        assert ibug_geometry_problems(ibug68_from_mesh(mesh[i])[:, :2]) == [], f"frame {i}"


def test_ibug68_map_is_mirror_consistent_on_a_flipped_photo():
    """A point and its iBUG mirror partner land on each other when the photo is flipped."""
    rgb = cv2.resize(skdata.astronaut()[0:300, 90:390], (256, 256), interpolation=cv2.INTER_AREA)
    with MeshTracker() as tracker:
        mesh, _ = tracker(rgb)
    with MeshTracker() as tracker:
        flipped, _ = tracker(np.ascontiguousarray(rgb[:, ::-1]))
    assert mesh is not None and flipped is not None
    ours = ibug68_from_mesh(mesh)[:, :2]
    theirs = ibug68_from_mesh(flipped)[:, :2]
    theirs = np.stack([256 - theirs[:, 0], theirs[:, 1]], axis=1)[IBUG68_MIRROR]
    face = np.ptp(ours[:, 0])
    err = np.linalg.norm(ours - theirs, axis=1) / face
    assert err.mean() < 0.03 and err.max() < 0.08, (err.mean(), err.argmax(), err.max())
    assert ibug_geometry_problems(ours) == []
    assert sorted(IBUG68_MIRROR[IBUG68_MIRROR]) == list(range(68))
    assert np.array_equal(IBUG68_MIRROR[IBUG68_MIRROR], np.arange(68))


# ---- gaps, several faces, no face ------------------------------------------------------


def test_fill_gaps_interpolates_inside_and_holds_at_the_ends():
    points = np.zeros((6, 1, 2))
    points[1], points[4] = 1.0, 4.0
    found = np.array([False, True, False, False, True, False])
    filled = fill_gaps(points, found)[:, 0, 0]
    np.testing.assert_allclose(filled, [1, 1, 2, 3, 4, 4])


def test_three_missing_frames_are_interpolated_and_reported(normalized_subject, tmp_path):
    frames = [read_rgb(p) for p in frame_paths(normalized_subject / "ori_imgs")[:40]]
    blank = np.full_like(frames[0], 128)
    data = make_subject(tmp_path, frames[:8] + [blank] * 3 + frames[11:])
    manifest = run(data)
    assert manifest["interpolated_ranges"] == [[8, 10]] and manifest["missing_frames"] == 3
    mesh = np.load(data / "landmarks.npy")
    for k, i in enumerate((8, 9, 10), start=1):
        expected = mesh[7] + (mesh[11] - mesh[7]) * k / 4
        np.testing.assert_allclose(mesh[i], expected, atol=1e-3)
    assert len(frame_paths(data / "lms", ".lms")) == 40


def test_a_face_gone_for_three_seconds_fails_naming_the_frames(normalized_subject, tmp_path):
    frames = [read_rgb(p) for p in frame_paths(normalized_subject / "ori_imgs")[:20]]
    blank = np.full_like(frames[0], 128)
    data = make_subject(tmp_path, frames[:10] + [blank] * 75 + frames[10:20])
    with pytest.raises(StageError) as err:
        run(data)
    message = str(err.value)
    assert "frames 10-84" in message and "75 of 95" in message and "max_gap_frames" in message
    assert "\n" not in message
    assert (
        not (data / "landmarks.npy").exists() and not (data.parent / "manifests" / "landmarks.json").exists()
    )
    assert not (data / "lms").exists()


def test_too_many_short_gaps_fail_on_the_missing_share(normalized_subject, tmp_path):
    frames = [read_rgb(p) for p in frame_paths(normalized_subject / "ori_imgs")[:20]]
    blank = np.full_like(frames[0], 128)
    frames[5:8] = [blank] * 3
    with pytest.raises(StageError, match=r"frames 5-7.*15%"):
        run(make_subject(tmp_path, frames), max_missing_share=0.1)


def test_a_video_without_a_face_fails_naming_its_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = [
        cv2.GaussianBlur(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), (9, 9), 3) for _ in range(10)
    ]
    data = make_subject(tmp_path, frames)
    with pytest.raises(StageError, match=r"\[t\] landmarks: no face found in any of the 10 frames \(0-9\)"):
        run(data)
    assert not (data / "landmarks.npy").exists()


def test_two_faces_follow_the_largest_most_central_one(normalized_subject, tmp_path, caplog):
    paths = frame_paths(normalized_subject / "ori_imgs")[:8]
    alone = make_subject(tmp_path / "alone", [read_rgb(p) for p in paths])
    run(alone)
    expected = np.load(alone / "landmarks.npy")[:, :, :2] + [64, 0]  # big face pasted at x=64, y=0
    canvases = []
    for p in paths:
        rgb = read_rgb(p)
        canvas = np.full((192, 192, 3), 200, np.uint8)
        canvas[96:, :96] = cv2.resize(rgb, (96, 96), interpolation=cv2.INTER_AREA)  # small, off-centre
        canvas[:128, 64:] = rgb
        canvases.append(canvas)
    data = make_subject(tmp_path / "two", canvases)
    with caplog.at_level(logging.WARNING, logger="ernerf.landmarks"):
        manifest = run(data)
    assert manifest["multi_face_ranges"] == [[0, 7]] and manifest["face_counts"] == [2] * 8
    assert "more than one face" in caplog.text
    err = np.linalg.norm(np.load(data / "landmarks.npy")[:, :, :2] - expected, axis=-1)
    assert err.mean() < 2.0, err.mean()


def test_choose_face_prefers_size_and_centre_then_continuity():
    def face(cx, cy, size):
        return np.array([[cx - size / 2, cy - size / 2, 0], [cx + size / 2, cy + size / 2, 0]], np.float32)

    small_central, big_corner = face(100, 100, 40), face(30, 30, 50)
    big_central = face(110, 100, 60)
    assert choose_face([small_central, big_central], (200, 200)) == 1
    assert choose_face([big_corner, small_central], (200, 200)) == 1  # central wins over slightly bigger
    assert choose_face([big_central, big_corner], (200, 200), last_center=np.array([32.0, 28.0])) == 1


# ---- face_alignment backend (weights only from the user's cache) -------------------------


def test_face_alignment_backend_names_the_missing_weights(face_subject, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(
        StageError, match=r"2DFAN4-11f355bf06\.pth\.tar.*not found at .*torch/hub/checkpoints"
    ):
        detect_landmarks(
            subject="t",
            data_dir=face_subject,
            dense_path=tmp_path / "d.npy",
            manifest_path=tmp_path / "m.json",
            backend="face_alignment",
        )
    assert not (tmp_path / "d.npy").exists()


def test_face_alignment_backend_loads_the_users_cached_weights(tmp_path, monkeypatch):
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from ernerf_core.preprocess.fan_landmarks import FanLandmarks, fan_weight_files

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    torch.manual_seed(0)
    files = fan_weight_files()
    fan, detector = FAN(4), s3fd()
    files["2DFAN-4"][0].parent.mkdir(parents=True)
    torch.save(fan.state_dict(), files["2DFAN-4"][0])
    torch.save(detector.state_dict(), files["s3fd"][0])
    loaded = FanLandmarks("t", "landmarks")
    loaded_state = loaded.fa.face_alignment_net.state_dict()
    for name, tensor in fan.state_dict().items():
        assert torch.equal(loaded_state[name], tensor), name
    key = "conv1_1.weight"
    assert torch.equal(loaded.fa.face_detector.face_detector.state_dict()[key], detector.state_dict()[key])
    # Not run on an image here: face-alignment's first call JIT-compiles (numba) for ~20 s.


def test_fan_face_choice_follows_the_mesh_face():
    from ernerf_core.preprocess.fan_landmarks import pick_face

    small = np.zeros((68, 2)) + [10, 10] + np.linspace(0, 5, 68)[:, None]
    big = np.zeros((68, 2)) + [50, 50] + np.linspace(0, 30, 68)[:, None]
    assert pick_face(None, None) is None and pick_face([], np.zeros(2)) is None
    assert np.array_equal(pick_face([small, big], None), big.astype(np.float32))
    assert np.array_equal(pick_face([small, big], np.array([12.0, 12.0])), small.astype(np.float32))


# ---- the real clip -----------------------------------------------------------------------


@pytest.mark.media
def test_real_clip_has_landmarks_on_every_frame(tmp_path):
    from ernerf_core.preprocess.normalize import normalize

    video = shared_media("talking_face_5s.mp4")
    data = tmp_path / "data"
    normalize(
        subject="real",
        video=video,
        frames_dir=data / "ori_imgs",
        audio_path=data / "aud.wav",
        manifest_path=tmp_path / "manifests" / "normalize.json",
        resolution=192,
        crop_scale=2.4,
        min_seconds=2.0,
    )
    manifest = run(data)
    assert manifest["frames"] >= 100 and all(manifest["detected"]), manifest["interpolated_ranges"]
    lms = np.loadtxt(data / "lms" / "0.lms")
    assert ibug_geometry_problems(lms) == []
