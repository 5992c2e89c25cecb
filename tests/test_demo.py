"""The synthetic demo subject: a real video whose ground truth is true.

The session fixture ``demo_clip`` (conftest.py) renders the 192 x 192, 3 s clip once; these
tests decode it with ffmpeg and check it against its truth file, and MediaPipe against both.
"""

from __future__ import annotations

import re
import subprocess

import numpy as np
import pytest
import soundfile as sf
from conftest import DEMO_SECONDS, DEMO_SIZE
from scipy.spatial.transform import Rotation

from ernerf_core.demo import FPS, make_demo_subject
from ernerf_core.demo.face_mesh import EYES, INNER_LIP_LOWER, INNER_LIP_UPPER, detect_landmarks
from ernerf_core.demo.speech import DEMO_SPEECH, DRIVE_SPEECH, frame_rms, load_clip
from ernerf_core.errors import StageError
from ernerf_core.fsio import read_json
from ernerf_core.media.ffmpeg import ffmpeg_command, run_ffmpeg

N_FRAMES = int(round(DEMO_SECONDS * FPS))


def decode_frames(path, size: int) -> np.ndarray:
    """[N, size, size, 3] uint8 RGB frames of a video."""
    raw = run_ffmpeg(["-i", path, "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3)


def decode_audio(path) -> np.ndarray:
    """[T] float32 16 kHz mono audio track of a media file."""
    raw = run_ffmpeg(["-i", path, "-vn", "-ac", "1", "-ar", "16000", "-f", "f32le", "pipe:1"]).stdout
    return np.frombuffer(raw, np.float32)


def stream_info(path) -> str:
    """ffmpeg's description of the file's streams (there is no ffprobe here)."""
    proc = subprocess.run(ffmpeg_command(["-i", path]), capture_output=True, text=True)
    return proc.stderr


def unpack_masks(truth) -> np.ndarray:
    n, h, w = truth["mask_shape"]
    return np.unpackbits(truth["head_mask"], axis=-1, count=int(w)).astype(bool).reshape(n, h, w)


@pytest.fixture(scope="module")
def truth(demo_clip):
    with np.load(demo_clip["truth"]) as npz:
        return {k: npz[k] for k in npz.files}


@pytest.fixture(scope="module")
def frames(demo_clip):
    return decode_frames(demo_clip["video"], DEMO_SIZE)


@pytest.fixture(scope="module")
def detections(frames):
    """MediaPipe landmarks ([478, 3] normalised, or None) on every frame of the 192 clip."""
    return detect_landmarks(list(frames))


@pytest.fixture(scope="module")
def clip512(tmp_path_factory):
    """A 2 s clip at the default size: truth, frames, and MediaPipe on every frame."""
    paths = _make(tmp_path_factory.mktemp("demo512"), size=512, seconds=2.0, seed=0)
    with np.load(paths["truth_path"]) as npz:
        truth = {k: npz[k] for k in npz.files}
    frames = decode_frames(paths["video_path"], 512)
    return truth, frames, detect_landmarks(list(frames))


def test_video_has_requested_size_rate_length_and_audio(demo_clip, frames):
    info = stream_info(demo_clip["video"])
    assert re.search(rf"Video: h264 .*yuv420p.*\b{DEMO_SIZE}x{DEMO_SIZE}\b.*\b25 fps", info), info
    assert re.search(r"Audio: aac .*44100 Hz, mono", info), info  # the shared writer encodes 44.1 kHz AAC
    assert frames.shape == (N_FRAMES, DEMO_SIZE, DEMO_SIZE, 3)
    audio = decode_audio(demo_clip["video"])
    assert abs(len(audio) / 16000 - DEMO_SECONDS) < 0.1
    assert np.sqrt(np.mean(audio ** 2)) > 0.01  # speech, not silence


def test_truth_arrays_have_consistent_shapes(truth):
    n, s = N_FRAMES, DEMO_SIZE
    assert set(truth) == {"euler_deg", "rotation", "trans", "focal", "vertices", "landmarks_2d", "blink",
                          "blink_frames", "mouth_open", "mouth_width", "head_mask", "mask_shape", "fps", "size"}
    assert truth["euler_deg"].shape == (n, 3) and truth["euler_deg"].dtype == np.float32
    assert truth["rotation"].shape == (n, 3, 3) and truth["trans"].shape == (n, 3)
    assert truth["vertices"].shape == (478, 3)
    assert truth["landmarks_2d"].shape == (n, 478, 2) and truth["landmarks_2d"].dtype == np.float32
    for key in ("blink", "mouth_open", "mouth_width"):
        assert truth[key].shape == (n,) and truth[key].dtype == np.float32
    assert tuple(truth["mask_shape"]) == (n, s, s)
    assert truth["head_mask"].shape == (n, s, (s + 7) // 8)
    assert int(truth["fps"]) == 25 and int(truth["size"]) == s and float(truth["focal"]) > 0


def test_pose_is_smooth_within_range_and_explains_the_landmarks(truth):
    euler = truth["euler_deg"]
    assert np.abs(euler).max() <= 12.0
    assert np.ptp(euler[:, 1]) > 1.0  # the head does move
    assert np.abs(np.diff(euler, axis=0)).max() < 2.0  # <= 2 degrees per frame: smooth
    expected = Rotation.from_euler("xyz", euler, degrees=True).as_matrix()
    np.testing.assert_allclose(truth["rotation"], expected, atol=1e-5)
    # Points that neither jaw nor eyelids move project exactly where the truth says.
    rigid = [1, 4, 10, 151, 168, 234, 454, 70, 300]  # nose, forehead, ears, brows
    cam = np.einsum("nij,vj->nvi", truth["rotation"], truth["vertices"][rigid]) + truth["trans"][:, None]
    proj = truth["focal"] * cam[..., :2] / cam[..., 2:] + DEMO_SIZE / 2
    np.testing.assert_allclose(proj, truth["landmarks_2d"][:, rigid], atol=1e-3)


def test_blinks_are_present_whole_and_inside_the_clip(truth):
    blink, peaks = truth["blink"], truth["blink_frames"]
    assert len(peaks) >= 2
    assert np.all(blink[peaks] == 1.0) and blink.min() == 0.0 and blink.max() == 1.0
    assert blink[0] == 0.0 and blink[-1] == 0.0
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, blink > 0, 0])))[::2]
    assert len(runs) == len(peaks) and np.all((runs >= 5) & (runs <= 7)), runs


def _frames_in(phones: set[str], starts: np.ndarray, names: list[str], min_s: float = 0.06) -> np.ndarray:
    """Frames whose centre lies in a segment of one of ``phones`` lasting ``min_s`` or more."""
    ends = np.r_[starts[1:], np.inf]
    centre = (np.arange(N_FRAMES) + 0.5) / FPS
    out = []
    for s, e, p in zip(starts, ends, names, strict=True):
        if p in phones and e - s >= min_s:
            out += list(np.flatnonzero((centre >= s + 0.02) & (centre < e - 0.02)))
    return np.array(out, int)


def test_mouth_follows_the_phones_of_the_muxed_speech(demo_clip, truth):
    """The truth's mouth is eSpeak NG's phone timeline of the speech (jaw and lip width per
    phoneme), in step with the muxed audio, and not its loudness alone."""
    from ernerf_core.demo.speech import DEMO_PHONES
    from ernerf_core.demo.visemes import read_timeline

    starts, names = read_timeline(DEMO_PHONES)
    mouth, width = truth["mouth_open"], truth["mouth_width"]
    assert mouth.min() >= 0.0 and mouth.max() <= 1.0 and width.min() >= -1.0 and width.max() <= 1.0
    shut = _frames_in({"m", "b", "p"}, starts, names, 0.05)
    wide = _frames_in({"a", "aI", "aU", "V", "0", "E"}, starts, names)
    rounded = _frames_in({"u:", "oU", "O@", "O:", "w"}, starts, names)
    spread = _frames_in({"i:", "i", "I", "eI"}, starts, names)
    assert len(shut) and len(wide) and len(rounded) and len(spread)
    assert mouth[shut].mean() < 0.5 * mouth[wide].mean()
    assert width[rounded].mean() < -0.2 and width[spread].mean() > 0.2
    # the timeline is in step with what a viewer hears: pauses are quiet, vowels loud
    audio = decode_audio(demo_clip["video"])  # the AAC track
    loud = 20 * np.log10(frame_rms(audio, N_FRAMES, FPS) + 1e-5)
    pause = _frames_in({"_", "_:"}, starts, names, 0.08)
    assert loud[wide].mean() > loud[pause].mean() + 15
    # opening and width are two shapes, and loudness alone does not give the opening
    assert abs(np.corrcoef(mouth, width)[0, 1]) < 0.5
    assert np.corrcoef(loud, mouth)[0, 1] < 0.8


def test_lip_width_moves_the_lip_corners(truth):
    lm = truth["landmarks_2d"]
    eyes = np.linalg.norm(lm[:, 33] - lm[:, 263], axis=1)  # outer eye corners: the head's scale
    corners = np.linalg.norm(lm[:, 61] - lm[:, 291], axis=1) / eyes  # outer lip corners
    assert np.corrcoef(corners, truth["mouth_width"])[0, 1] > 0.8
    assert np.ptp(corners) > 0.1 * corners.mean()  # about a fifth of the mouth's width, end to end


def test_head_mask_covers_face_and_hair_only(truth):
    masks = unpack_masks(truth)
    share = masks.mean(axis=(1, 2))
    assert np.all((share > 0.05) & (share < 0.3)), share
    lm = np.floor(truth["landmarks_2d"]).astype(int)
    for i in range(0, N_FRAMES, 10):
        for k in (1, 10, 199, 234, 454):  # nose tip, forehead, chin, cheeks near the ears
            x, y = lm[i, k]
            assert masks[i, y, x], (i, k)
        top = np.flatnonzero(masks[i].any(axis=1))[0]
        assert top < truth["landmarks_2d"][i, 10, 1] - 0.06 * DEMO_SIZE  # hair above the forehead
        assert not masks[i, -1].any()  # the body is not head


def _eye_opening(lm: np.ndarray) -> float:
    """Mean lid gap over eye width of both eyes ([478, 2] pixels)."""
    ratios = []
    for upper, lower in EYES:
        gap = np.linalg.norm(lm[upper[1:-1]] - lm[lower[1:-1]], axis=1).mean()
        ratios.append(gap / np.linalg.norm(lm[upper[0]] - lm[upper[-1]]))
    return float(np.mean(ratios))


def _lip_gap(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[INNER_LIP_LOWER[1:-1]] - lm[INNER_LIP_UPPER[1:-1]], axis=1).mean())


def _check_mediapipe_agrees(truth, found, size, max_median_px, max_frame_px):
    """MediaPipe finds the face on every frame, where the truth landmarks put it."""
    assert all(lm is not None for lm in found), [i for i, lm in enumerate(found) if lm is None]
    seen = [lm[:, :2] * size for lm in found]
    errors = [np.median(np.linalg.norm(lm - truth["landmarks_2d"][i], axis=1)) for i, lm in enumerate(seen)]
    assert np.median(errors) < max_median_px and max(errors) < max_frame_px, errors
    return seen


def test_mediapipe_agrees_with_the_truth_at_192(truth, detections):
    seen = _check_mediapipe_agrees(truth, detections, DEMO_SIZE, 1.5, 3.0)
    # blinks and speech are visible even at this size
    opening = np.array([_eye_opening(lm) for lm in seen])
    blink = truth["blink"]
    assert np.corrcoef(opening, blink)[0, 1] < -0.85
    assert opening[blink == 1].mean() < 0.6 * opening[blink == 0].mean()
    gaps = [_lip_gap(lm) for lm in seen]
    assert np.corrcoef(gaps, truth["mouth_open"])[0, 1] > 0.6


def test_mediapipe_agrees_with_the_truth_at_512(clip512):
    truth, frames, found = clip512
    assert frames.shape == (50, 512, 512, 3)
    seen = _check_mediapipe_agrees(truth, found, 512, 2.0, 3.5)
    opening = np.array([_eye_opening(lm) for lm in seen])
    blink = truth["blink"]
    assert np.corrcoef(opening, blink)[0, 1] < -0.85
    assert opening[blink == 1].mean() < 0.5 * opening[blink == 0].mean()
    gaps = [_lip_gap(lm) for lm in seen]
    assert np.corrcoef(gaps, truth["mouth_open"])[0, 1] > 0.85
    corners = [np.linalg.norm(lm[61] - lm[291]) / np.linalg.norm(lm[33] - lm[263]) for lm in seen]
    assert np.corrcoef(corners, truth["mouth_width"][:50])[0, 1] > 0.6  # MediaPipe sees the width too


def test_named_contours_follow_the_mediapipe_topology():
    from mediapipe.python.solutions import face_mesh_connections as conn

    from ernerf_core.demo.face_mesh import FACE_OVAL, tesselation_triangles

    def edges(chain, closed=False):
        pairs = list(zip(chain[:-1], chain[1:], strict=True)) + ([(chain[-1], chain[0])] if closed else [])
        return {frozenset(p) for p in pairs}

    def as_set(connections):
        return {frozenset(p) for p in connections}

    assert edges(FACE_OVAL, closed=True) == as_set(conn.FACEMESH_FACE_OVAL)
    assert edges(INNER_LIP_UPPER) | edges(INNER_LIP_LOWER) <= as_set(conn.FACEMESH_LIPS)
    for (upper, lower), eye in zip(EYES, (conn.FACEMESH_RIGHT_EYE, conn.FACEMESH_LEFT_EYE), strict=True):
        assert edges(upper) | edges(lower) == as_set(eye)
    tris = tesselation_triangles()
    assert tris.shape[1] == 3 and set(np.unique(tris)) == set(range(468))
    tri_edges = {frozenset(e) for t in tris for e in ((t[0], t[1]), (t[1], t[2]), (t[0], t[2]))}
    assert tri_edges == as_set(conn.FACEMESH_TESSELATION)


def test_drive_audio_is_different_16k_mono_speech(demo_clip):
    drive, rate = sf.read(str(demo_clip["drive"]), dtype="float32")
    info = sf.info(str(demo_clip["drive"]))
    assert rate == 16000 and info.channels == 1 and info.format == "WAV"
    assert 5.0 < len(drive) / rate < 9.0
    np.testing.assert_allclose(drive, load_clip(DRIVE_SPEECH), atol=1e-4)
    demo = load_clip(DEMO_SPEECH)[: len(drive)]
    assert abs(np.corrcoef(drive, demo)[0, 1]) < 0.2


def test_committed_speech_clips_are_small_and_long_enough():
    assert DEMO_SPEECH.stat().st_size + DRIVE_SPEECH.stat().st_size < 1_000_000
    assert 20.0 <= len(load_clip(DEMO_SPEECH)) / 16000 <= 24.0
    assert 6.0 <= len(load_clip(DRIVE_SPEECH)) / 16000 <= 8.0


def test_manifest_records_what_was_made(demo_clip, truth):
    manifest = read_json(demo_clip["manifest"])
    assert manifest["stage"] == "demo_subject" and manifest["subject"] == "demo"
    assert manifest["frames"] == N_FRAMES and manifest["size"] == DEMO_SIZE
    assert manifest["params"] == {"size": DEMO_SIZE, "seconds": DEMO_SECONDS, "seed": 0}
    assert manifest["blink_frames"] == truth["blink_frames"].tolist()


def _make(out, **kwargs):
    paths = {"video_path": out / "demo.mp4", "truth_path": out / "demo_truth.npz",
             "drive_path": out / "drive.wav", "manifest_path": out / "demo.json"}
    make_demo_subject(**paths, **kwargs)
    return paths


def test_same_seed_same_clip_other_seed_other_motion(tmp_path):
    a = _make(tmp_path / "a", size=64, seconds=1.2, seed=3)
    b = _make(tmp_path / "b", size=64, seconds=1.2, seed=3)
    c = _make(tmp_path / "c", size=64, seconds=1.2, seed=4)
    ta, tb, tc = (np.load(p["truth_path"]) for p in (a, b, c))
    for key in ta.files:
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)
    np.testing.assert_array_equal(decode_frames(a["video_path"], 64), decode_frames(b["video_path"], 64))
    assert np.abs(ta["euler_deg"] - tc["euler_deg"]).max() > 1.0
    assert len(ta["blink_frames"]) >= 2  # even 1.2 s holds two blinks


@pytest.mark.parametrize("kwargs, problem", [({"size": 191}, "even"), ({"seconds": 0.5}, "shorter")])
def test_bad_parameters_fail_clearly_and_write_nothing(tmp_path, kwargs, problem):
    with pytest.raises(StageError, match=problem) as err:
        _make(tmp_path, **kwargs)
    assert "[demo] demo_subject:" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_cli_runs_the_same_function(tmp_path):
    import argparse

    from ernerf_core import cli
    from ernerf_core.demo import add_cli

    assert "ernerf_core.demo" in cli.STAGE_MODULES
    parser = argparse.ArgumentParser()
    add_cli(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "--out", str(tmp_path), "--size", "48", "--seconds", "1",
                              "--seed", "1"])
    args.func(args)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "demo.mp4", "demo_truth.npz",
                                                          "drive.wav"]
    assert read_json(tmp_path / "demo.json")["params"] == {"size": 48, "seconds": 1.0, "seed": 1}
