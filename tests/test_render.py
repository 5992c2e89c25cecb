"""Pose tracks for driving audio, render_test and render_audio on a tiny trained portrait."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from synthetic_subject import make_synthetic_subject
from test_torso import write_random_head

from ernerf_core.cli import main as ernerf_main
from ernerf_core.errors import StageError
from ernerf_core.media.audio import write_wav
from ernerf_core.media.video import VideoWriter, inspect_video
from ernerf_core.render.browser_check import browser_check, find_chromium
from ernerf_core.render.driving import render_audio
from ernerf_core.render.poses import driving_track, pingpong_indices, smooth_poses
from ernerf_core.render.test_split import render_test
from ernerf_core.train.portrait import assemble_portrait
from ernerf_core.train.torso import train_torso

# ---- pose tracks ------------------------------------------------------------------------------


def test_pingpong_loops_back_and_forth_without_jumps():
    assert pingpong_indices(4, 11).tolist() == [0, 1, 2, 3, 2, 1, 0, 1, 2, 3, 2]
    assert pingpong_indices(1, 3).tolist() == [0, 0, 0]
    assert pingpong_indices(5, 3).tolist() == [0, 1, 2]  # shorter audio: a prefix of the track
    idx = pingpong_indices(7, 200)
    assert np.abs(np.diff(idx)).max() == 1 and idx.min() == 0 and idx.max() == 6
    with pytest.raises(ValueError):
        pingpong_indices(0, 5)


def _poses(n, seed=0):
    rng = np.random.default_rng(seed)
    out = np.tile(np.eye(4), (n, 1, 1))
    out[:, :3, :3] = Rotation.from_rotvec(rng.normal(scale=0.2, size=(n, 3))).as_matrix()
    out[:, :3, 3] = rng.normal(size=(n, 3))
    return out


def test_smoothing_averages_a_centred_window():
    poses = _poses(20)
    smooth = smooth_poses(poses, 7)
    # translations: the centred mean, the window shrinking at the ends
    np.testing.assert_allclose(smooth[10, :3, 3], poses[7:14, :3, 3].mean(0))
    np.testing.assert_allclose(smooth[0, :3, 3], poses[0:4, :3, 3].mean(0))
    np.testing.assert_allclose(smooth[19, :3, 3], poses[16:20, :3, 3].mean(0))
    # rotations stay proper rotations; identical poses are untouched
    r = smooth[:, :3, :3]
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.tile(np.eye(3), (20, 1, 1)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    same = np.tile(poses[:1], (9, 1, 1))
    np.testing.assert_allclose(smooth_poses(same, 7), same, atol=1e-12)
    # a steady turn about one axis averages to the middle angle
    turn = np.tile(np.eye(4), (7, 1, 1))
    turn[:, :3, :3] = Rotation.from_euler("y", np.linspace(-0.3, 0.3, 7)[:, None]).as_matrix()
    middle = Rotation.from_matrix(smooth_poses(turn, 7)[3, :3, :3]).as_euler("xyz")
    np.testing.assert_allclose(middle, 0.0, atol=1e-9)
    # jitter goes down; window 1 is the identity
    jitter = lambda p: np.linalg.norm(np.diff(p[:, :3, 3], axis=0), axis=1).mean()  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(poses)
    np.testing.assert_array_equal(smooth_poses(poses, 1), poses)


def test_driving_track_loops_poses_and_eyes():
    poses, eyes = _poses(5), np.arange(5) / 10
    path, eye, idx = driving_track(poses, eyes, 12)
    assert idx.tolist() == [0, 1, 2, 3, 4, 3, 2, 1, 0, 1, 2, 3]
    np.testing.assert_allclose(path, poses[idx], atol=1e-6)
    np.testing.assert_allclose(eye, eyes[idx], atol=1e-7)
    smooth, fixed, _ = driving_track(poses, eyes, 12, smooth_window=7, fixed_eye=0.25)
    assert np.all(fixed == 0.25) and smooth.dtype == np.float32
    np.testing.assert_allclose(smooth, smooth_poses(poses[idx], 7), atol=1e-6)


# ---- rendering a tiny trained portrait ----------------------------------------------------------


@pytest.fixture(scope="module")
def portrait(tmp_path_factory):
    """A 32x32 synthetic subject with mel-shaped features ([N, 16, 80]) and its portrait (random head,
    trained torso)."""
    root = tmp_path_factory.mktemp("render_subject")
    subj = make_synthetic_subject(root, n_frames=12, size=32, feature_dim=80)
    write_random_head(root / "lips" / "model.pt", subj.data_dir)
    train_torso(subject="synth", data_dir=subj.data_dir, model_path=root / "torso" / "model.pt",
                manifest_path=root / "manifests" / "train_torso.json",
                settings={"iters": 20, "num_rays": 512, "downscale": 1.0, "final_val_frames": 1}, device="cpu")
    assemble_portrait(subject="synth", data_dir=subj.data_dir, head_path=root / "lips" / "model.pt",
                      torso_path=root / "torso" / "model.pt", model_path=root / "portrait" / "model.pt",
                      manifest_path=root / "manifests" / "portrait.json", val_frames=1, device="cpu")
    return subj


def _browser_playable(facts, frames, width, height):
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p" and facts["fps"] == 25
    assert facts["audio_codec"] == "aac" and facts["faststart"]
    assert (facts["frames"], facts["width"], facts["height"]) == (frames, width, height)


def test_render_test_writes_videos_sheet_and_metrics(portrait, tmp_path):
    out = tmp_path / "render"
    summary = render_test(subject="synth", model_path=portrait.root / "portrait" / "model.pt",
                          data_dir=portrait.data_dir, video_path=out / "test.mp4",
                          side_by_side_path=out / "test_side_by_side.mp4",
                          sheet_path=out / "contact_sheet.png", metrics_path=out / "metrics.json",
                          device="cpu")
    n_val = portrait.n_frames - portrait.n_train
    _browser_playable(inspect_video(out / "test.mp4"), n_val, 32, 32)
    _browser_playable(inspect_video(out / "test_side_by_side.mp4"), n_val, 64, 32)
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet.shape == (64, 32 * n_val, 3)  # one column per val frame: truth over render
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"] == n_val and metrics["first_frame"] == portrait.n_train
    assert metrics["audio_start_seconds"] == pytest.approx(portrait.n_train / 25)
    assert 5 < metrics["psnr"] < 60 and 0 < metrics["ssim"] <= 1 and metrics["render_fps"] > 0
    assert metrics["psnr_head_region"] is not None
    assert (metrics["lpips"] is None) == (metrics["lpips_unavailable"] is not None)
    assert set(metrics["lipsync"]) >= {"mouth_corr_truth", "audio_envelope_corr", "face_found_share",
                                       "mouth_corr_truth_frames", "mouth_corr_truth_ci95",
                                       "mouth_width_corr_truth", "opening_spread", "audio_swap"}
    assert len(metrics["per_frame"]["psnr"]) == n_val
    assert summary["psnr"] == metrics["psnr"]
    # audio swap: each val frame rendered again with the audio of the frame half the split away
    swap = metrics["lipsync"]["audio_swap"]
    assert swap["shift_frames"] == n_val // 2
    assert swap["lips_rect_pixel_change"]["frames"] == n_val


def test_audio_swap_tells_a_head_that_hears_from_one_that_ignores_audio(portrait, tmp_path):
    """A random head barely uses its audio code (it varies by 1e-4); amplify the per-point audio
    attention so the audio moves the render, then zero it so the audio cannot."""
    import torch

    from ernerf_core.model.io import load_head, save_head

    def swap_change(name, gain):
        head = load_head(portrait.root / "lips" / "model.pt")
        with torch.no_grad():
            for key, prm in head.named_parameters():
                if key.startswith("audio_net") and key.endswith("bias"):
                    prm.zero_()  # the code then varies with the features, not with the biases
            head.encoder.table.uniform_(-1, 1)  # position features of order 1, not 1e-4
            head.aud_ch_att_net.net[-1].weight.mul_(gain)
        save_head(tmp_path / name / "model.pt", head, head.meta)
        assemble_portrait(subject="synth", data_dir=portrait.data_dir, head_path=tmp_path / name / "model.pt",
                          torso_path=portrait.root / "torso" / "model.pt", model_path=tmp_path / name / "p.pt",
                          manifest_path=tmp_path / name / "portrait.json", val_frames=1, device="cpu")
        out = tmp_path / name / "render"
        render_test(subject="synth", model_path=tmp_path / name / "p.pt", data_dir=portrait.data_dir,
                    video_path=out / "test.mp4", side_by_side_path=out / "sbs.mp4",
                    sheet_path=out / "sheet.png", metrics_path=out / "metrics.json", device="cpu")
        change = json.loads((out / "metrics.json").read_text())["lipsync"]["audio_swap"]["lips_rect_pixel_change"]
        assert change["frames"] == portrait.n_frames - portrait.n_train
        return change["mean"]

    assert swap_change("hears", 1e6) > 1.0  # grey levels (0..255) in the lips rectangle
    assert swap_change("deaf", 0.0) == 0.0


def _driving(tmp_path, n_frames, backend="mel", shape=(16, 80)):
    """A driving-audio folder as rule driving_features leaves it."""
    folder = tmp_path / "driving"
    folder.mkdir()
    rng = np.random.default_rng(1)
    np.save(folder / "aud_mel.npy", rng.normal(size=(n_frames, *shape)).astype(np.float32))
    t = np.arange(n_frames * 640) / 16000
    write_wav(folder / "aud.wav", 0.3 * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(5 * t)), 16000)
    (folder / "audio_features.json").write_text(json.dumps(
        {"backend": backend, "checkpoint": None, "feature_shape": [n_frames, *shape]}))
    return folder


def test_render_audio_loops_the_track_for_long_audio(portrait, tmp_path):
    n = portrait.n_train + 4  # longer than the pose track: plays it back and forth
    drive = _driving(tmp_path, n)
    video = tmp_path / "out" / "drive.mp4"
    result = render_audio(subject="synth", model_path=portrait.root / "portrait" / "model.pt",
                          features_path=drive / "aud_mel.npy", wav_path=drive / "aud.wav",
                          audio_manifest_path=drive / "audio_features.json", video_path=video,
                          smooth_path=True, fixed_eye=0.0, downscale=2.0, device="cpu")
    assert result["frames"] == n
    memory = result["memory"]  # what the long-render check reads
    assert 0 < memory["rss_mb_after_first_tenth"] <= memory["peak_rss_mb"] and memory["rss_mb_at_end"] > 0
    facts = inspect_video(video)
    _browser_playable(facts, n, 16, 16)  # downscale 2 of the 32 x 32 training size
    assert facts["duration"] == pytest.approx(n / 25, abs=0.05)


@pytest.mark.parametrize("backend, shape, message", [
    ("hubert", (16, 80), "trained on 'mel' audio features but the driving features are 'hubert'"),
    ("mel", (2, 1024), r"features of \[16, 80\] per frame"),
])
def test_render_audio_refuses_mismatched_features(portrait, tmp_path, backend, shape, message):
    drive = _driving(tmp_path, 5, backend=backend, shape=shape)
    video = tmp_path / "drive.mp4"
    with pytest.raises(StageError, match=message):
        render_audio(subject="synth", model_path=portrait.root / "portrait" / "model.pt",
                     features_path=drive / "aud_mel.npy", wav_path=drive / "aud.wav",
                     audio_manifest_path=drive / "audio_features.json", video_path=video, device="cpu")
    assert not video.exists()


def test_render_command_featurises_any_audio(portrait, tmp_path):
    """``ernerf render --audio X --subject S``: features with the model's backend, then render."""
    wav = tmp_path / "hello.wav"
    t = np.arange(int(0.3 * 16000)) / 16000
    write_wav(wav, 0.3 * np.sin(2 * np.pi * 300 * t), 16000)
    results = portrait.root.parent
    (results / "synth").mkdir(exist_ok=True)
    (results / "synth" / "portrait").mkdir(exist_ok=True)
    model = results / "synth" / "portrait" / "model.pt"
    model.write_bytes((portrait.root / "portrait" / "model.pt").read_bytes())
    assert ernerf_main(["render", "--audio", str(wav), "--subject", "synth", "--results", str(results),
                        "--device", "cpu"]) == 0
    _browser_playable(inspect_video(results / "synth" / "render" / "audio" / "hello.mp4"), 8, 32, 32)


@pytest.mark.skipif(find_chromium() is None, reason="no Chromium on this machine (apt install chromium)")
def test_rendered_videos_play_in_headless_chromium(tmp_path):
    """What render_test/render_audio write (H.264 yuv420p + AAC, faststart) plays in a browser;
    a file that is not a video does not, so the check can tell the two apart."""
    wav = tmp_path / "tone.wav"
    t = np.arange(2 * 16000) / 16000
    write_wav(wav, 0.3 * np.sin(2 * np.pi * 220 * t), 16000)
    good = tmp_path / "good.mp4"
    with VideoWriter(good, 64, 64, n_frames=50, audio=wav) as video:
        for i in range(50):
            video.write(np.full((64, 64, 3), i * 5, np.uint8))
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    shot = tmp_path / "page.png"
    states = browser_check([good, bad], screenshot=shot)
    assert states[0]["plays"] and states[0]["width"] == 64 and states[0]["duration"] == pytest.approx(2.0, abs=0.1)
    assert not states[1]["plays"]
    assert cv2.imread(str(shot)) is not None


@pytest.mark.parametrize("head_downscale, size", [(None, 32), (2.0, 16)])
def test_renders_default_to_the_size_the_head_was_trained_at(portrait, tmp_path, head_downscale, size):
    payload = torch.load(portrait.root / "portrait" / "model.pt", weights_only=True)
    payload["meta"]["train"]["head"]["settings"] = {"downscale": head_downscale} if head_downscale else {}
    model = tmp_path / "model.pt"
    torch.save(payload, model)
    drive = _driving(tmp_path, 3)
    video = tmp_path / "out" / "drive.mp4"
    render_audio(subject="synth", model_path=model, features_path=drive / "aud_mel.npy", wav_path=drive / "aud.wav",
                 audio_manifest_path=drive / "audio_features.json", video_path=video, downscale=None, device="cpu")
    facts = inspect_video(video)
    assert (facts["width"], facts["height"]) == (size, size)
