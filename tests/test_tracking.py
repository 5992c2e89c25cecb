"""tracking: the landmark bundle adjustment against known poses (procedural face, demo subject)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_media
from scipy.spatial.transform import Rotation

from ernerf_core.errors import StageError
from ernerf_core.preprocess import landmark_ba as lb
from ernerf_core.preprocess.pose_math import geodesic_deg
from ernerf_core.preprocess.synthetic_face import make_sequence, write_subject
from ernerf_core.preprocess.tracking import NERF_AABB, head_points_in_nerf, track_head_pose
from ernerf_core.preprocess.transforms import write_transforms

FLIP = np.diag([1.0, -1.0, -1.0])   # OpenCV camera/head axes <-> the tracker's (OpenGL) axes


def run_stage(data: Path, **kw) -> dict:
    root = data.parent
    return track_head_pose(subject="t", data_dir=data, params_path=data / "track_params.pt",
                           preview_path=root / "preview" / "tracking.png",
                           manifest_path=root / "manifests" / "tracking.json", **kw)


def rotation_errors(est: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame angle (deg) to the truth, raw and after removing one constant head-frame
    rotation (the head axes are a convention: only the frame-to-frame motion is measurable)."""
    raw = geodesic_deg(torch.from_numpy(est), torch.from_numpy(truth)).numpy()
    offset = Rotation.from_matrix(np.einsum("nji,njk->nik", truth, est)).mean().as_matrix()
    aligned = geodesic_deg(torch.from_numpy(est), torch.from_numpy(truth @ offset)).numpy()
    return raw, aligned


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """40 frames of the procedural face at 512x512 (0.5 px noise, biased noisy depth), tracked
    by the stage, then turned into transforms."""
    seq = make_sequence(40, resolution=512, seed=3)
    data = tmp_path_factory.mktemp("synthetic") / "data"
    write_subject(seq, data)
    manifest = run_stage(data)
    write_transforms(subject="t", params_path=data / "track_params.pt", train_path=data / "transforms_train.json",
                     val_path=data / "transforms_val.json", manifest_path=data.parent / "manifests" / "tf.json")
    return seq, data, manifest


def test_synthetic_poses_match_the_truth(synthetic):
    seq, data, manifest = synthetic
    params = torch.load(data / "track_params.pt", weights_only=True)
    from ernerf_core.preprocess.pose_math import euler_to_matrix

    rot = euler_to_matrix(params["euler"].double()).numpy()
    raw, aligned = rotation_errors(rot, seq.rotation)
    assert np.median(raw) <= 1.5 and np.median(aligned) <= 0.75
    assert manifest["reprojection_px"]["median"] <= 1.5
    # jitter: no more frame-to-frame motion than the truth's own, plus 10 %
    assert manifest["jitter"]["rotation_deg_per_frame"] <= 1.1 * lb.rotation_jitter_deg(seq.rotation)
    # the focal is weakly observable; it must still land in the right range
    assert 0.6 * seq.focal < params["focal"].item() < 1.5 * seq.focal
    # translation: the head ~7 dm away like the reference's BFM tracks (scale set by the eye span)
    ratio = params["trans"][:, 2].numpy() / seq.trans[:, 2]
    assert np.all((ratio > 0.6) & (ratio < 1.5)) and ratio.std() < 0.02


def test_params_file_is_the_reference_layout(synthetic):
    _, data, manifest = synthetic
    params = torch.load(data / "track_params.pt", weights_only=True)
    n = manifest["frames"]
    assert params["euler"].shape == (n, 3) and params["trans"].shape == (n, 3)
    assert params["focal"].shape == (1,) and params["exp"].shape == (n, 8)
    assert params["id"].shape == (1, 468 * 3) and params["exp_basis"].shape == (8, 468 * 3)
    assert params["image_size"].tolist() == [512, 512]
    assert all(v.dtype in (torch.float32, torch.int64) for v in params.values())


def test_head_lands_inside_the_nerf_box_like_the_reference(synthetic):
    _, data, manifest = synthetic
    params = torch.load(data / "track_params.pt", weights_only=True)
    shape = params["id"].reshape(-1, 3).numpy()
    # the eye span fixes the scale: 0.9 dm between the outer eye corners
    assert np.linalg.norm(shape[263] - shape[33]) == pytest.approx(lb.EYE_SPAN_DM, rel=1e-4)
    nerf = head_points_in_nerf(shape)
    assert np.all(nerf >= NERF_AABB[:3]) and np.all(nerf <= NERF_AABB[3:])
    assert manifest["head"]["share_in_aabb"] == 1.0
    # the face fills a good part of the box (not a speck at the centre)
    assert np.ptp(nerf[:, 0]) > 0.5 and np.ptp(nerf[:, 2]) > 0.4
    # cameras where the reference puts them: 0.4-1.2 m (x4 in NeRF units), looking at the head
    train = json.loads((data / "transforms_train.json").read_text())
    for frame in train["frames"]:
        c2w = np.array(frame["transform_matrix"])
        pos = c2w[:3, 3]
        assert 0.4 < np.linalg.norm(pos) < 1.2
        assert np.dot(-c2w[:3, 2], -pos / np.linalg.norm(pos)) > 0.97


def test_preview_and_manifest(synthetic):
    import cv2

    _, data, manifest = synthetic
    png = cv2.imread(str(data.parent / "preview" / "tracking.png"))
    assert png is not None and png.shape[0] >= 320 and png.std() > 5
    video = Path(manifest["preview"]["video"])
    assert video.exists() and video.stat().st_size > 1000 and manifest["preview"]["video_frames"] == 40
    assert len(manifest["per_frame_reprojection_px"]) == 40
    assert set(manifest["reprojection_px"]) >= {"median", "p95", "max"}


def test_divergence_fails_naming_the_frames(tmp_path):
    seq = make_sequence(24, resolution=512, seed=4)
    lms = seq.landmarks.copy()
    rng = np.random.default_rng(0)
    for i in (12, 13, 14):    # another face's points: a detector swap on three frames
        lms[i, :, :2] = lms[i, rng.permutation(478), :2]
    seq.landmarks = lms
    write_subject(seq, tmp_path / "data", draw=False)
    with pytest.raises(StageError, match=r"12-14.*max_reprojection_px") as err:
        run_stage(tmp_path / "data", focal_range=(1100, 1100))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "data" / "track_params.pt").exists()


def test_bad_inputs_fail_before_anything_is_written(tmp_path):
    seq = make_sequence(6, resolution=128, seed=5)
    write_subject(seq, tmp_path / "data", draw=False)
    (tmp_path / "data" / "landmarks.npy").unlink()
    with pytest.raises(StageError, match="landmarks stage"):
        run_stage(tmp_path / "data")
    lms = seq.landmarks.copy()
    lms[2, 5] = np.nan
    np.save(tmp_path / "data" / "landmarks.npy", lms)
    with pytest.raises(StageError, match="frames 2"):
        run_stage(tmp_path / "data")
    np.save(tmp_path / "data" / "landmarks.npy", seq.landmarks)
    with pytest.raises(StageError, match="01_MorphableModel.mat"):
        run_stage(tmp_path / "data", backend="bfm")
    assert not (tmp_path / "data" / "track_params.pt").exists()


def test_frame_jacobian_matches_finite_differences():
    seq = make_sequence(4, seed=6)
    init = lb.initialise(seq.landmarks[:, :468], 8)
    prob = lb._Problem(init, np.arange(4), 1100.0, (256.0, 256.0), seq.landmarks, lb.TrackerSettings(), 512,
                       temporal=False).double()
    for name in ("mask", "obs_u", "obs_v", "obs_z", "r0"):
        setattr(prob, name, getattr(prob, name).double())
    with torch.no_grad():
        prob.expr.normal_()
    res, jac = lb._frame_system(prob)
    eps = 1e-6
    for j in (0, 2, 4, 7):     # a rotation, a translation and two expression columns
        delta = torch.zeros(4, 6 + 8, dtype=torch.float64)
        delta[:, j] = eps
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                prob.omega.copy_(sign * delta[:, :3])
                prob.trans.add_(sign * delta[:, 3:6])
                prob.expr.add_(sign * delta[:, 6:])
                values.append(lb._frame_system(prob)[0])
                prob.omega.zero_()
                prob.trans.sub_(sign * delta[:, 3:6])
                prob.expr.sub_(sign * delta[:, 6:])
        numeric = (values[0] - values[1]) / (2 * eps)
        torch.testing.assert_close(jac[:, :, j], numeric, atol=1e-5, rtol=1e-5)


# --- the demo subject: its ground truth mapped into the normalised frames -------------------

def demo_truth(demo_clip, data: Path):
    truth = dict(np.load(demo_clip["truth"]))
    norm = json.loads((data.parent / "manifests" / "normalize.json").read_text())
    crop, res = norm["crop"], norm["resolution"]
    k = res / crop["size"]
    points = (truth["landmarks_2d"].astype(np.float64) - [crop["x"], crop["y"]]) * k
    # the tracker's head axes are OpenGL-style: R_ours = F R_truth F (then a constant gauge)
    rot = np.einsum("ij,njk,kl->nil", FLIP, truth["rotation"].astype(np.float64), FLIP)
    return truth, points, rot, k, res


def truth_depth(truth: dict, k: float) -> np.ndarray:
    """MediaPipe-style relative depth of the true vertices (pixels, nearer = smaller): what the
    landmark detector's z channel reports, made from the truth instead of a detector."""
    cam = np.einsum("nij,pj->npi", truth["rotation"].astype(np.float64), truth["vertices"].astype(np.float64))
    z = cam[..., 2] + truth["trans"][:, None, 2]
    zm = z[:, :468].mean(1, keepdims=True)
    return (z - zm) * float(truth["focal"]) * k / zm


def demo_subject_copy(normalized_subject: Path, dest: Path) -> Path:
    data = dest / "data"
    shutil.copytree(normalized_subject / "ori_imgs", data / "ori_imgs")
    (dest / "manifests").mkdir(parents=True)
    shutil.copy(normalized_subject.parent / "manifests" / "normalize.json", dest / "manifests" / "normalize.json")
    return data


def check_against_truth(manifest: dict, data: Path, rot_truth: np.ndarray, res: int, max_deg: float):
    from ernerf_core.preprocess.pose_math import euler_to_matrix

    params = torch.load(data / "track_params.pt", weights_only=True)
    rot = euler_to_matrix(params["euler"].double()).numpy()
    _, aligned = rotation_errors(rot, rot_truth)
    assert np.median(aligned) <= max_deg
    assert manifest["reprojection_px"]["median"] * 512 / res <= 1.5
    assert manifest["jitter"]["rotation_deg_per_frame"] <= 1.1 * lb.rotation_jitter_deg(rot_truth)
    return aligned


def test_demo_truth_landmarks(demo_clip, normalized_subject, tmp_path):
    data = demo_subject_copy(normalized_subject, tmp_path)
    truth, points, rot_truth, k, res = demo_truth(demo_clip, data)
    lms = np.concatenate([points, truth_depth(truth, k)[..., None]], -1).astype(np.float32)
    np.save(data / "landmarks.npy", lms)
    manifest = run_stage(data)
    check_against_truth(manifest, data, rot_truth, res, max_deg=1.0)


def test_demo_detected_landmarks(demo_clip, normalized_subject, face_subject, tmp_path):
    """The landmarks stage's MediaPipe detections of the demo (the shared face_subject run)."""
    data = demo_subject_copy(normalized_subject, tmp_path)
    shutil.copy(face_subject / "landmarks.npy", data / "landmarks.npy")
    _, _, rot_truth, _, res = demo_truth(demo_clip, data)
    manifest = run_stage(data)
    check_against_truth(manifest, data, rot_truth, res, max_deg=1.5)


@pytest.mark.media
def test_real_clip_reprojection(tmp_path):
    """The real talking-face clip through normalize and landmarks (128 px, first 2 s tracked)."""
    from ernerf_core.preprocess.landmarks import detect_landmarks
    from ernerf_core.preprocess.normalize import normalize

    clip = shared_media("talking_face_5s.mp4")
    full = tmp_path / "full" / "data"
    normalize(subject="real", video=clip, frames_dir=full / "ori_imgs", audio_path=full / "aud.wav",
              manifest_path=full.parent / "manifests" / "normalize.json", resolution=128, crop_scale=2.4,
              min_seconds=2.0)
    detect_landmarks(subject="real", data_dir=full, dense_path=full / "landmarks.npy",
                     manifest_path=full.parent / "manifests" / "landmarks.json")
    data = tmp_path / "short" / "data"
    (data / "ori_imgs").mkdir(parents=True)
    for i in range(50):
        shutil.copy(full / "ori_imgs" / f"{i}.jpg", data / "ori_imgs" / f"{i}.jpg")
    np.save(data / "landmarks.npy", np.load(full / "landmarks.npy")[:50])
    manifest = run_stage(data)
    assert manifest["reprojection_px"]["median"] * 512 / 128 <= 2.0
    assert manifest["head"]["share_in_aabb"] == 1.0


def test_no_expressions_and_no_smoothing_still_track(tmp_path):
    seq = make_sequence(8, resolution=256, seed=9, expression_scale=0.0)
    write_subject(seq, tmp_path / "data", draw=False)
    manifest = run_stage(tmp_path / "data", expressions=0, smooth_weight=0.0, focal_range=(1100, 1100))
    params = torch.load(tmp_path / "data" / "track_params.pt", weights_only=True)
    assert params["exp"].shape == (8, 0) and params["exp_basis"].shape == (0, 468 * 3)
    assert manifest["reprojection_px"]["median"] <= 0.75      # 0.5 px noise: the floor is 0.63
