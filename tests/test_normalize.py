"""Stage normalize: any video -> 25 fps face-centred square frames + 16 kHz mono audio, aligned.

Test videos are made here with ffmpeg from a real photo (scikit-image's astronaut) so face
detection works; all are <= 2.4 s and <= 360x640.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
from skimage import data as skdata

from ernerf_core.errors import StageError
from ernerf_core.media import frame_paths, read_rgb, run_ffmpeg, write_png
from ernerf_core.preprocess import normalize as normalize_module
from ernerf_core.preprocess.normalize import FaceBox, normalize, square_crop

RES = 96
SECONDS = 2.4  # 60 frames at 25 fps
MARK_T = 1.6  # the picture turns grey and a tone starts at this time


def ff(*args: str) -> None:
    run_ffmpeg(["-loglevel", "error", "-y", *args])


@pytest.fixture(scope="module")
def face_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    write_png(path, cv2.resize(skdata.astronaut(), (256, 256), interpolation=cv2.INTER_AREA))
    return path


def make_video(path: Path, face_png: Path, *, vf: str, fps: float = 30, seconds: float = SECONDS,
               audio: str | None = "sine=f=330:sample_rate=44100", channels: int = 2,
               codec: tuple[str, ...] = ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"),
               extra: tuple[str, ...] = ()) -> Path:
    """The photo looped at ``fps`` through filter ``vf``, with a lavfi ``audio`` source."""
    args = ["-loop", "1", "-framerate", str(fps), "-i", str(face_png)]
    if audio:
        args += ["-f", "lavfi", "-i", audio, "-ac", str(channels)]
    ff(*args, "-t", str(seconds), "-vf", vf, *codec, *extra, str(path))
    return path


def run(tmp_path: Path, video: Path, subject: str = "clip", **kw) -> tuple[dict, Path]:
    data = tmp_path / "out" / "data"
    kw = {"resolution": RES, **kw}
    manifest = normalize(subject=subject, video=video, frames_dir=data / "ori_imgs",
                         audio_path=data / "aud.wav",
                         manifest_path=tmp_path / "out" / "manifests" / "normalize.json", **kw)
    return manifest, data


def check_outputs(manifest: dict, data: Path, frames: int, resolution: int = RES) -> None:
    paths = frame_paths(data / "ori_imgs")
    assert [int(p.stem) for p in paths] == list(range(frames)) == list(range(manifest["frames"]))
    assert read_rgb(paths[-1]).shape == (resolution, resolution, 3)
    info = sf.info(data / "aud.wav")
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    assert info.frames == frames * 640  # exactly N / 25 s
    assert manifest["fps"] == 25 and manifest["sample_rate"] == 16000
    assert manifest["duration"] == pytest.approx(frames / 25)
    on_disk = json.loads((data.parent / "manifests" / "normalize.json").read_text())
    assert on_disk["stage"] == "normalize" and on_disk["frames"] == frames


def source_frame(video: Path, t: float = 0.5) -> np.ndarray:
    """The displayed (auto-rotated) source frame at time t as RGB [H, W, 3]."""
    png = video.with_suffix(".frame.png")
    ff("-ss", str(t), "-i", str(video), "-frames:v", "1", str(png))
    return read_rgb(png)


def assert_crop_matches_source(manifest: dict, data: Path, video: Path, frame: int = 12) -> None:
    """Frame i equals the recorded square of the source at i / 25 s, resized (geometry check)."""
    c = manifest["crop"]
    src = source_frame(video, frame / 25)
    expect = cv2.resize(src[c["y"]:c["y"] + c["size"], c["x"]:c["x"] + c["size"]], (RES, RES),
                        interpolation=cv2.INTER_AREA)
    got = read_rgb(data / "ori_imgs" / f"{frame}.jpg")
    assert np.abs(got.astype(int) - expect).mean() < 6.0
    # The same square moved sideways by 10 % of its size must match clearly worse.
    shift = max(1, c["size"] // 10)
    x2 = c["x"] + shift if c["x"] + shift + c["size"] <= src.shape[1] else c["x"] - shift
    off = cv2.resize(src[c["y"]:c["y"] + c["size"], x2:x2 + c["size"]], (RES, RES),
                     interpolation=cv2.INTER_AREA)
    assert np.abs(got.astype(int) - off).mean() > np.abs(got.astype(int) - expect).mean() + 3


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------- good input


def test_30fps_mp4_to_25fps_frames_and_16k_audio(tmp_path, face_png):
    video = make_video(tmp_path / "talk30.mp4", face_png, vf="scale=320:320")
    before = sha256(video), video.stat().st_mtime_ns
    manifest, data = run(tmp_path, video)
    assert (sha256(video), video.stat().st_mtime_ns) == before  # the user's file is untouched
    check_outputs(manifest, data, frames=60)
    src = manifest["source"]
    assert src["video"]["avg_fps"] == 30 and (src["video"]["width"], src["video"]["height"]) == (320, 320)
    assert (src["audio"]["codec"], src["audio"]["sample_rate"], src["audio"]["channels"]) == ("aac", 44100, 2)
    assert src["variable_fps"] is False and "mp4" in src["format"]
    assert manifest["params"] == {"resolution": RES, "crop_scale": 2.4, "min_seconds": 2.0}
    face = manifest["face"]
    assert face["found"] == face["samples"] >= 4
    # The astronaut's face in the 320 px frame is ~65 px wide around (141, 75).
    assert face["size"] == pytest.approx(65, rel=0.15)
    c = manifest["crop"]
    assert c["size"] == round(2.4 * face["size"]) and not manifest["crop_shrunk"]
    assert 0 <= c["x"] <= 320 - c["size"] and 0 <= c["y"] <= 320 - c["size"]
    assert_crop_matches_source(manifest, data, video)
    audio, _ = sf.read(data / "aud.wav", dtype="float32")
    # lavfi sine (amplitude 1/8) upmixed by ffmpeg to stereo at 0.707 per channel, averaged back.
    assert np.sqrt(np.mean(audio[1000:-1000] ** 2)) == pytest.approx(0.125 * 0.7071 / np.sqrt(2), rel=0.05)
    # Leftovers from the atomic writes would look like outputs.
    assert sorted(p.name for p in data.iterdir()) == ["aud.wav", "ori_imgs"]


def test_variable_frame_rate_keeps_time(tmp_path, face_png):
    """Sparse (10 fps) before 1 s, dense (30 fps) after; grey from 1.6 s; tone from 1.6 s.

    Frame i must show the source at i / 25 s: grey starts at frame 40. Taking input frames in
    order without their timestamps would put it at frame 28.
    """
    tone = (f"aevalsrc='if(gte(t,{MARK_T}),0.5*sin(2*PI*440*t),0)|"
            f"if(gte(t,{MARK_T}),0.3*sin(2*PI*440*t),0)':s=48000")
    video = make_video(tmp_path / "vfr.mp4", face_png, audio=tone,
                       vf=f"scale=256:256,hue=s=0:enable='gte(t,{MARK_T})',"
                          "select='gte(t,1)+not(mod(n,3))'",
                       extra=("-fps_mode", "vfr"))
    manifest, data = run(tmp_path, video)
    check_outputs(manifest, data, frames=60)
    assert manifest["source"]["variable_fps"] is True and manifest["source"]["vfr_ratio"] > 0
    assert manifest["source"]["audio"]["sample_rate"] == 48000

    def colourfulness(i: int) -> float:  # spread of R, G, B per pixel: ~11 in colour, ~1.5 grey
        return float(read_rgb(data / "ori_imgs" / f"{i}.jpg").astype(float).std(axis=2).mean())

    grey = np.array([colourfulness(i) for i in range(60)]) < 5
    first_grey = int(np.argmax(grey))
    assert abs(first_grey - MARK_T * 25) <= 1 and grey[first_grey:].all() and not grey[:first_grey].any()
    audio, _ = sf.read(data / "aud.wav", dtype="float32")
    onset = np.argmax(np.abs(audio) > 0.05) / 16000
    assert onset == pytest.approx(MARK_T, abs=0.02)
    # Stereo 0.5 / 0.3 averages to 0.4.
    assert np.abs(audio[int(1.8 * 16000):]).max() == pytest.approx(0.4, abs=0.04)


@pytest.mark.parametrize("name,vf,codec,size", [
    # odd size: MJPEG in Matroska (x264 4:2:0 needs even sizes), 22.05 kHz mono PCM
    ("odd.mkv", "scale=240:240,pad=333:251:47:5", ("-c:v", "mjpeg", "-c:a", "pcm_s16le"), (333, 251)),
    # portrait phone video: stored 640x360 with a 90 degree display matrix, shown 360x640
    ("portrait.mp4", "scale=300:300,pad=360:640:30:110,transpose=1",
     ("-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac"), (360, 640)),
])
def test_odd_and_portrait_sizes(tmp_path, face_png, name, vf, codec, size):
    video = make_video(tmp_path / name, face_png, vf=vf, fps=24, codec=codec,
                       audio="sine=f=200:sample_rate=22050", channels=1)
    if name.startswith("portrait"):
        rotated = tmp_path / "portrait_rot.mp4"
        ff("-display_rotation:v", "90", "-i", str(video), "-c", "copy", str(rotated))
        video = rotated
    manifest, data = run(tmp_path, video)
    check_outputs(manifest, data, frames=60)
    v = manifest["source"]["video"]
    assert (v["width"], v["height"]) == size
    c = manifest["crop"]
    assert 0 <= c["x"] and c["x"] + c["size"] <= size[0] and 0 <= c["y"] and c["y"] + c["size"] <= size[1]
    assert_crop_matches_source(manifest, data, video)


def test_crop_too_large_is_shrunk_to_fit(tmp_path, face_png):
    video = make_video(tmp_path / "odd.mkv", face_png, vf="scale=240:240,pad=333:251:47:5",
                       codec=("-c:v", "mjpeg", "-c:a", "pcm_s16le"))
    manifest, data = run(tmp_path, video, crop_scale=6.0)
    assert manifest["crop_shrunk"] and manifest["crop"]["size"] == 251 and manifest["crop"]["y"] == 0
    assert_crop_matches_source(manifest, data, video)


def test_square_crop_clamps_and_shrinks():
    face = FaceBox(cx=10.0, cy=95.0, size=40.0, samples=5, found=5)
    assert square_crop(face, 2.0, 200, 100) == normalize_module.SquareCrop(0, 20, 80, False)
    assert square_crop(face, 3.0, 200, 100) == normalize_module.SquareCrop(0, 0, 100, True)
    far_right = FaceBox(cx=199.0, cy=50.0, size=20.0, samples=5, found=5)
    assert square_crop(far_right, 2.0, 200, 100) == normalize_module.SquareCrop(160, 30, 40, False)


def test_cli_writes_the_subject_folder(tmp_path, face_png):
    video = make_video(tmp_path / "talk.mov", face_png, vf="scale=256:256", fps=25)
    parser = argparse.ArgumentParser()
    normalize_module.add_cli(parser.add_subparsers())
    out = tmp_path / "results" / "me" / "data"
    args = parser.parse_args(["normalize", "--subject", "me", "--video", str(video), "--out", str(out),
                              "--resolution", "64", "--crop-scale", "3"])
    manifest = args.func(args)
    assert (out / "aud.wav").is_file() and frame_paths(out / "ori_imgs")
    saved = json.loads((out.parent / "manifests" / "normalize.json").read_text())
    assert saved["params"]["crop_scale"] == 3.0 and saved["resolution"] == 64 == manifest["resolution"]
    assert read_rgb(out / "ori_imgs" / "0.jpg").shape == (64, 64, 3)


# ----------------------------------------------------------------------------- bad input


def expect_stage_error(tmp_path: Path, video: Path, *needles: str, subject: str = "clip", **kw) -> None:
    """normalize fails with a one-line StageError and leaves nothing that looks finished."""
    out = tmp_path / "out"
    stale = out / "manifests" / "normalize.json"  # from an earlier run: must not survive
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_text("{}")
    with pytest.raises(StageError) as err:
        run(tmp_path, video, subject=subject, **kw)
    msg = str(err.value)
    assert "\n" not in msg and "normalize" in msg and err.value.stage == "normalize"
    assert f"[{subject}]" in msg or subject == "" or "not a safe identifier" in msg
    assert err.value.remedy
    for needle in needles:
        assert needle in msg
    if "not a safe identifier" not in msg:
        assert not stale.exists()
    data = out / "data"
    assert not (data / "ori_imgs").exists() and not (data / "aud.wav").exists()
    assert not data.exists() or not any(data.iterdir())  # no temporaries either


def test_missing_file(tmp_path):
    expect_stage_error(tmp_path, tmp_path / "nope.mp4", "does not exist")


def test_zero_length_file(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    expect_stage_error(tmp_path, empty, "is empty (0 bytes)")


def test_text_file_is_not_a_video(tmp_path):
    text = tmp_path / "talk.mp4"
    text.write_text("not a video at all\n" * 50)
    expect_stage_error(tmp_path, text, "not a readable video", "Invalid data")


def test_audio_only_file_is_not_a_video(tmp_path):
    wav = tmp_path / "speech.m4a"
    ff("-f", "lavfi", "-i", "sine=f=300", "-t", "2.5", "-c:a", "aac", str(wav))
    expect_stage_error(tmp_path, wav, "audio-only file", "no video stream")


def test_no_audio_track(tmp_path, face_png):
    video = make_video(tmp_path / "silent.mp4", face_png, vf="scale=128:128", audio=None,
                       codec=("-c:v", "libx264", "-pix_fmt", "yuv420p"))
    expect_stage_error(tmp_path, video, "has no audio track")


def test_truncated_file_without_index(tmp_path, face_png):
    video = make_video(tmp_path / "full.mp4", face_png, vf="scale=128:128")
    cut = tmp_path / "cut.mp4"  # the mp4 index (moov) is at the end: cutting loses it
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 55 // 100])
    expect_stage_error(tmp_path, cut, "not a readable video or is damaged", "moov atom not found")


def test_truncated_file_with_index_first(tmp_path, face_png):
    video = make_video(tmp_path / "full.mp4", face_png, vf="scale=128:128", extra=("-movflags", "+faststart"))
    cut = tmp_path / "cut.mp4"  # index intact, media data cut: decodes part, then "partial file"
    cut.write_bytes(video.read_bytes()[: video.stat().st_size * 55 // 100])
    expect_stage_error(tmp_path, cut, "damaged or truncated", "partial file")


def test_shorter_than_min_seconds(tmp_path, face_png):
    video = make_video(tmp_path / "short.mp4", face_png, vf="scale=128:128", seconds=1.5)
    expect_stage_error(tmp_path, video, "lasts 1.50 s", "min_seconds = 2")


@pytest.fixture(scope="module")
def coffee_png(tmp_path_factory) -> Path:
    """A real photo without a face (scikit-image's coffee cup)."""
    path = tmp_path_factory.mktemp("photo") / "coffee.png"
    write_png(path, cv2.resize(skdata.coffee(), (256, 256), interpolation=cv2.INTER_AREA))
    return path


def test_no_face(tmp_path, coffee_png):
    video = make_video(tmp_path / "noface.mp4", coffee_png, vf="scale=256:256")
    expect_stage_error(tmp_path, video, "no face found in", "frames sampled from")


def test_face_in_too_few_frames(tmp_path, face_png, coffee_png):
    video = tmp_path / "brief_face.mp4"  # the face for the first 0.5 s, then a coffee cup
    ff("-loop", "1", "-framerate", "25", "-i", str(face_png), "-loop", "1", "-framerate", "25",
       "-i", str(coffee_png), "-f", "lavfi", "-i", "sine", "-t", str(SECONDS),
       "-filter_complex", "[0:v][1:v]overlay=enable='gte(t,0.5)'[v]", "-map", "[v]", "-map", "2:a",
       "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", str(video))
    expect_stage_error(tmp_path, video, "a face was found in only 1 of")


def test_audio_much_shorter_than_video(tmp_path, face_png):
    video = make_video(tmp_path / "gap.mkv", face_png, vf="scale=128:128",
                       audio="sine=f=300:duration=0.8", codec=("-c:v", "mjpeg", "-c:a", "pcm_s16le"))
    expect_stage_error(tmp_path, video, "audio track lasts 0.80 s but the video 2.40 s")


@pytest.mark.parametrize("subject", ["", "1abc", "../etc", "a b", "bad/name", "x" * 65, "ok\nname"])
def test_unsafe_subject_name(tmp_path, subject):
    # Checked before anything else: the (missing) video is never looked at.
    expect_stage_error(tmp_path, tmp_path / "nope.mp4", "not a safe identifier", subject=subject)


@pytest.mark.parametrize("bad", [{"resolution": 0}, {"crop_scale": -1.0}, {"min_seconds": -2.0}])
def test_parameters_out_of_range(tmp_path, bad):
    expect_stage_error(tmp_path, tmp_path / "nope.mp4", "parameters out of range", **bad)


def test_real_talking_face_clip(tmp_path):
    """A real recording from ../shared/media, when present (590x590 25 fps, 44.1 kHz stereo)."""
    from conftest import shared_media

    video = shared_media("talking_face_5s.mp4")
    manifest, data = run(tmp_path, video)
    assert manifest["frames"] in (125, 126)
    check_outputs(manifest, data, frames=manifest["frames"])
    assert manifest["face"]["found"] == manifest["face"]["samples"]
