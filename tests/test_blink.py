"""Stage blink: AU45_r per frame in OpenFace's au.csv, from the eye aspect ratio or OpenFace."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ernerf_core.errors import StageError
from ernerf_core.preprocess.blink import COLUMNS, blink_events, calibrate_au45, extract_blink


def read_au45(path: Path) -> np.ndarray:
    with open(path, newline="") as f:
        return np.array([float(row[" AU45_r"]) for row in csv.DictReader(f)])


def event_f1(found: list[tuple[int, int]], truth: list[tuple[int, int]], slack: int = 2) -> float:
    """F1 of blink events; a found event matches an unmatched true one it overlaps (+-slack)."""
    unmatched = list(truth)
    hits = 0
    for a, b in found:
        for t in unmatched:
            if a <= t[1] + slack and b >= t[0] - slack:
                unmatched.remove(t)
                hits += 1
                break
    if not found or not truth:
        return float(found == truth)
    precision, recall = hits / len(found), hits / len(truth)
    return 0.0 if hits == 0 else 2 * precision * recall / (precision + recall)


def test_event_f1_counts_matches_misses_and_false_alarms():
    assert event_f1([(10, 12), (40, 42)], [(11, 13), (41, 43)]) == 1.0
    assert event_f1([(10, 12)], [(11, 13), (41, 43)]) == pytest.approx(2 / 3)
    assert event_f1([(10, 12), (60, 61)], [(11, 13)]) == pytest.approx(2 / 3)
    assert event_f1([], [(1, 2)]) == 0.0


def test_demo_blinks_are_found(face_subject, demo_clip):
    truth = np.load(demo_clip["truth"])
    au45 = read_au45(face_subject / "au.csv")
    assert len(au45) == len(truth["blink"])
    true_events = blink_events(truth["blink"], 0.5)
    assert len(true_events) == len(truth["blink_frames"]) >= 2
    found = blink_events(au45)
    assert event_f1(found, true_events) >= 0.9, (found, true_events)
    # open eyes sit at 0, closed eyes in OpenFace's range for a full blink
    far_from_blinks = np.ones(len(au45), bool)
    for peak in truth["blink_frames"]:
        far_from_blinks[max(0, peak - 5) : peak + 6] = False
    assert np.median(au45[far_from_blinks]) == 0.0 and au45[far_from_blinks].max() < 0.5
    assert all(1.5 <= au45[max(0, p - 1) : p + 2].max() <= 3.0 for p in truth["blink_frames"])


def test_au_csv_has_openface_columns(face_subject):
    with open(face_subject / "au.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["frame", " face_id", " timestamp", " confidence", " success", " AU45_r"] == COLUMNS
    assert rows[1][:5] == ["1", "0", "0.000", "1.00", "1"] and rows[2][2] == "0.040"
    manifest = json.loads((face_subject.parent / "manifests" / "blink.json").read_text())
    assert manifest["frames"] == len(rows) - 1 and manifest["params"]["backend"] == "ear"


def test_calibration_follows_a_drifting_open_eye():
    rng = np.random.default_rng(0)
    n = 250
    ear = np.linspace(0.26, 0.36, n) + rng.normal(0, 0.006, n)  # the eyes open wider over 10 s
    blinks = [(30, 33), (120, 124), (200, 202)]
    for a, b in blinks:
        ear[a : b + 1] *= np.array([0.6, 0.2, 0.15, 0.4, 0.7])[: b - a + 1]
    au45, calibration = calibrate_au45(ear)
    assert calibration["closed_drop"] == pytest.approx(0.75)  # the deepest drop (85%) is capped
    found = blink_events(au45)
    assert event_f1(found, blinks) == 1.0
    outside = np.ones(n, bool)
    for a, b in blinks:
        outside[a - 1 : b + 2] = False
    assert au45[outside].max() < 0.3


def test_a_subject_who_never_blinks_gets_no_blinks():
    rng = np.random.default_rng(1)
    au45, _ = calibrate_au45(0.3 + rng.normal(0, 0.005, 200))
    assert blink_events(au45) == [] and au45.max() < 1.0


# ---- OpenFace import ---------------------------------------------------------------------


def openface_csv(path: Path, frames: list[int], au: list[float], success: list[int] | None = None) -> Path:
    header = "frame, face_id, timestamp, confidence, success, AU01_r, AU45_r, AU45_c"
    success = success or [1] * len(frames)
    lines = [header] + [
        f"{f}, 0, {(f - 1) / 25:.3f}, 0.98, {s}, 0.10, {a:.2f}, 1"
        for f, a, s in zip(frames, au, success, strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_openface_csv_is_reindexed_and_repaired(face_subject, tmp_path):
    n = len(list((face_subject / "ori_imgs").glob("*.jpg")))
    frames = [f for f in range(1, n + 1) if f not in (5, 6, 7, n)]  # OpenFace dropped 4 frames
    au = [float(f % 3) for f in frames]
    success = [0 if f == 20 else 1 for f in frames]  # and failed on one
    src = openface_csv(tmp_path / "openface.csv", frames, au, success)
    manifest = extract_blink(
        subject="t",
        data_dir=face_subject,
        au_path=tmp_path / "au.csv",
        manifest_path=tmp_path / "blink.json",
        backend="openface",
        openface_csv=str(src),
    )
    au45 = read_au45(tmp_path / "au.csv")
    assert len(au45) == n and manifest["filled_count"] == 5
    assert manifest["filled_frames"] == f"4-6, 19, {n - 1}"  # 0-based frame indices
    assert au45[3] == pytest.approx(4 % 3) and au45[7] == pytest.approx(8 % 3)
    np.testing.assert_allclose(au45[4:7], np.interp([5, 6, 7], [4, 8], [4 % 3, 8 % 3]), atol=0.01)
    assert au45[19] == pytest.approx((au45[18] + au45[20]) / 2, abs=0.01) and au45[n - 1] == au45[n - 2]
    with open(tmp_path / "au.csv", newline="") as f:
        success_col = [row[" success"] for row in csv.DictReader(f)]
    assert success_col[4] == "0" and success_col[3] == "1"


def test_openface_backend_errors(face_subject, tmp_path):
    def run(csv_path):
        return extract_blink(
            subject="t",
            data_dir=face_subject,
            au_path=tmp_path / "au.csv",
            manifest_path=tmp_path / "b.json",
            backend="openface",
            openface_csv=csv_path,
        )

    with pytest.raises(StageError, match="openface_csv is not set"):
        run(None)
    with pytest.raises(StageError, match="not found"):
        run(str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("frame, face_id, AU01_r\n1, 0, 0.5\n")
    with pytest.raises(StageError, match="no 'AU45_r' column"):
        run(str(bad))
    few = openface_csv(tmp_path / "few.csv", [1, 2, 3], [0.0, 1.0, 0.0])
    with pytest.raises(StageError, match="AU45 for only 3 of the subject's"):
        run(str(few))
    assert not (tmp_path / "au.csv").exists() and not (tmp_path / "b.json").exists()


def test_ear_backend_needs_landmarks(face_subject, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(face_subject / "ori_imgs", data / "ori_imgs")
    with pytest.raises(StageError, match="run the landmarks stage first"):
        extract_blink(subject="t", data_dir=data, au_path=data / "au.csv", manifest_path=tmp_path / "b.json")
