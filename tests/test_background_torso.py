"""Stages background and torso_gt: bc.jpg, gt_imgs/, torso_imgs/ (the reference's algorithms).

Exact checks on small synthetic scenes (known background, known regions), and the
reference's invariants on the demo subject.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from ernerf_core.errors import StageError
from ernerf_core.media.frames import frame_paths, read_rgb, write_jpg
from ernerf_core.preprocess.background import extract_background
from ernerf_core.preprocess.parsing_codes import BACKGROUND, HEAD, NECK, TORSO, read_parsing, write_parsing
from ernerf_core.preprocess.torso_gt import DARKEN, make_torso_and_gt, torso_and_gt


def gradient(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([4 * xx + 20, 4 * yy + 20, 200 - 2 * xx - 2 * yy], -1).clip(0, 255).astype(np.uint8)


def test_background_takes_each_pixel_from_a_frame_where_it_was_clear(tmp_path):
    """A person block crosses a known background: bc shows the background everywhere."""
    h, w, n = 48, 64, 41  # frames 0, 20 and 40 are sampled
    truth = gradient(h, w)
    data = tmp_path / "data"
    for i in range(n):
        x0 = 4 + i  # the block moves right, 1 px per frame
        labels = np.zeros((h, w), np.uint8)
        labels[10:48, x0 : x0 + 16] = TORSO
        labels[10:20, x0 + 4 : x0 + 12] = HEAD
        frame = truth.copy()
        frame[labels != BACKGROUND] = (250, 20, 250)
        write_jpg(data / "ori_imgs" / f"{i}.jpg", frame)
        write_parsing(data / "parsing" / f"{i}.png", labels)
    manifest = extract_background(
        subject="t", data_dir=data, bc_path=data / "bc.jpg", manifest_path=tmp_path / "b.json"
    )
    assert manifest["sampled_frames"] == [0, 20, 40] and manifest["clear_share"] == 1.0
    diff = np.abs(read_rgb(data / "bc.jpg").astype(int) - truth).max(-1)
    assert np.percentile(diff, 99) <= 12 and np.median(diff) <= 3, (np.percentile(diff, 99), np.median(diff))


def test_background_fills_never_clear_pixels_from_the_nearest_clear_one(tmp_path):
    h, w = 32, 32
    data = tmp_path / "data"
    labels = np.zeros((h, w), np.uint8)
    labels[8:32, 8:24] = TORSO  # never moves: pixels under and near it are never clear
    frame = gradient(h, w)
    write_jpg(data / "ori_imgs" / "0.jpg", frame)
    write_parsing(data / "parsing" / "0.png", labels)
    manifest = extract_background(
        subject="t", data_dir=data, bc_path=data / "bc.jpg", manifest_path=tmp_path / "b.json"
    )
    bc = read_rgb(data / "bc.jpg").astype(int)
    assert 0 < manifest["clear_share"] < 1
    # brute force: every pixel copies the nearest pixel more than 5 px from the block
    yy, xx = np.mgrid[0:h, 0:w]
    dist_to_block = np.min(
        [np.hypot(yy - y, xx - x) for y, x in zip(*np.nonzero(labels), strict=True)], axis=0
    )
    clear_y, clear_x = np.nonzero(dist_to_block > 5)
    assert manifest["clear_share"] == pytest.approx(len(clear_y) / (h * w), abs=1e-4)
    nearest = np.argmin((yy[..., None] - clear_y) ** 2 + (xx[..., None] - clear_x) ** 2, axis=-1)
    expected = frame[clear_y[nearest], clear_x[nearest]].astype(int)
    diff = np.abs(bc - expected).max(-1)  # JPEG rings at the fill's seams, so percentiles
    assert np.median(diff) <= 3 and np.percentile(diff, 90) <= 12, (np.median(diff), np.percentile(diff, 90))


def test_background_needs_some_clear_pixels(tmp_path):
    data = tmp_path / "data"
    write_jpg(data / "ori_imgs" / "0.jpg", gradient(16, 16))
    write_parsing(data / "parsing" / "0.png", np.full((16, 16), TORSO, np.uint8))
    with pytest.raises(StageError, match=r"no pixel is more than 5 px from the person.*crop_scale"):
        extract_background(
            subject="t", data_dir=data, bc_path=data / "bc.jpg", manifest_path=tmp_path / "b.json"
        )
    assert not (data / "bc.jpg").exists() and not (tmp_path / "b.json").exists()


def synthetic_portrait() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rgb, labels, bc) 40x40: a head over a neck over a torso; the head reaches the torso
    beside the neck (as jaw and hair do)."""
    labels = np.zeros((40, 40), np.uint8)
    labels[0:28, 10:30] = HEAD
    labels[20:28, 15:25] = NECK
    labels[28:40, :] = TORSO
    colours = {BACKGROUND: (0, 255, 0), HEAD: (180, 120, 90), NECK: (200, 150, 100), TORSO: (50, 60, 200)}
    rgb = np.zeros((40, 40, 3), np.uint8)
    for label, colour in colours.items():
        rgb[labels == label] = colour
    return rgb, labels, np.full((40, 40, 3), (10, 20, 30), np.uint8)


def test_gt_image_replaces_only_the_background():
    rgb, labels, bc = synthetic_portrait()
    gt, _ = torso_and_gt(rgb, labels, bc)
    assert np.array_equal(gt[labels == BACKGROUND], bc[labels == BACKGROUND])
    assert np.array_equal(gt[labels != BACKGROUND], rgb[labels != BACKGROUND])


def test_torso_image_continues_neck_and_torso_under_the_head():
    rgb, labels, bc = synthetic_portrait()
    _, torso = torso_and_gt(rgb, labels, bc)
    alpha = torso[..., 3]
    # neck columns: the neck (grown 3 px up, its top pushed 4 px down) is continued up to the
    # image top: no hole anywhere above the neck
    assert (alpha[0:28, 15:25] == 255).all()
    # beside the neck the torso is continued 8 px up (rows 20-27), in its own colour, darkened
    for k in range(9):
        row = 28 - k
        expected = (np.array([50.0, 60.0, 200.0]) * DARKEN**k).astype(np.uint8)
        assert (alpha[row, 10:15] == 255).all() and (torso[row, 10:15, :3] == expected).all(), row
    assert (alpha[0:20, 10:15] == 0).all() and (alpha[0:20, 25:30] == 0).all()  # the rest of the head
    assert (alpha[0:28, 0:10] == 0).all() and (torso[alpha == 0, :3] == 0).all()  # background
    assert (alpha[28:40] == 255).all()
    # the neck fill is neck-coloured (blurred and darkened, never the background or the head)
    fill = torso[5:17, 17:23, :3].astype(int)
    assert (fill[..., 0] > fill[..., 2]).all() and (np.abs(fill - [200, 150, 100]).max(-1) < 80).all()


def test_demo_gt_and_torso_images(face_subject):
    n = len(frame_paths(face_subject / "ori_imgs"))
    assert (
        len(frame_paths(face_subject / "gt_imgs")) == n
        and len(frame_paths(face_subject / "torso_imgs", ".png")) == n
    )
    bc = read_rgb(face_subject / "bc.jpg").astype(int)
    for i in (0, n - 1):
        labels = read_parsing(face_subject / "parsing" / f"{i}.png")
        gt = read_rgb(face_subject / "gt_imgs" / f"{i}.jpg").astype(int)
        ori = read_rgb(face_subject / "ori_imgs" / f"{i}.jpg").astype(int)
        person = labels != BACKGROUND
        assert np.abs(gt - ori)[person].mean() < 3 and np.abs(gt - bc)[~person].mean() < 3
        rgba = cv2.imread(str(face_subject / "torso_imgs" / f"{i}.png"), cv2.IMREAD_UNCHANGED)
        assert rgba.shape == (*labels.shape, 4)
        alpha = rgba[..., 3]
        assert (alpha[(labels == NECK) | (labels == TORSO)] == 255).all()
        # every neck column that meets the head is opaque for 20 px above the neck's top
        neck_cols = np.flatnonzero((labels == NECK).any(0))
        for c in neck_cols:
            top = np.flatnonzero(labels[:, c] == NECK)[0]
            if labels[top - 1, c] == HEAD:
                assert (alpha[max(0, top - 20) : top, c] == 255).all(), (i, c)
        head_only = labels == HEAD
        head_only[:, neck_cols] = False
        assert (alpha[head_only] == 0).mean() > 0.8  # the head is cut away beside the neck


def test_demo_background_matches_the_frames_where_always_visible(face_subject):
    bc = read_rgb(face_subject / "bc.jpg").astype(int)
    paths = frame_paths(face_subject / "ori_imgs")
    always = np.ones(bc.shape[:2], bool)
    for i in range(0, len(paths), 5):
        always &= read_parsing(face_subject / "parsing" / f"{i}.png") == BACKGROUND
    always = cv2.erode(always.astype(np.uint8), np.ones((13, 13), np.uint8)).astype(bool)
    assert always.sum() > 100
    ori = read_rgb(paths[len(paths) // 2]).astype(int)
    assert np.abs(bc - ori)[always].mean() < 4


def test_torso_gt_needs_bc_and_leaves_nothing_on_failure(face_subject, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(face_subject / "ori_imgs", data / "ori_imgs")
    shutil.copytree(face_subject / "parsing", data / "parsing")
    with pytest.raises(StageError, match="run the background stage first"):
        make_torso_and_gt(
            subject="t",
            data_dir=data,
            gt_dir=data / "gt_imgs",
            torso_dir=data / "torso_imgs",
            manifest_path=tmp_path / "m.json",
        )
    shutil.copy(face_subject / "bc.jpg", data / "bc.jpg")
    (data / "parsing" / "7.png").unlink()
    with pytest.raises(StageError, match=r"no parsing .*7\.png"):
        make_torso_and_gt(
            subject="t",
            data_dir=data,
            gt_dir=data / "gt_imgs",
            torso_dir=data / "torso_imgs",
            manifest_path=tmp_path / "m.json",
        )
    assert not (data / "gt_imgs").exists() and not (data / "torso_imgs").exists()
    assert sorted(p.name for p in data.iterdir()) == ["bc.jpg", "ori_imgs", "parsing"]
