"""ernerf_core.media: ffmpeg lookup, probing by parsing ffmpeg's summary, audio decoding, frames."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf

from ernerf_core.media import (
    FFmpegError,
    MediaError,
    NoAudioStreamError,
    ffmpeg_exe,
    frame_count,
    frame_paths,
    load_audio,
    probe,
    read_rgb,
    run_ffmpeg,
    write_jpg,
    write_png,
    write_wav,
)
from ernerf_core.media.probe import parse_probe

SR_IN = 44100
SECONDS = 1.5


def ff(*args: str) -> None:
    run_ffmpeg(["-loglevel", "error", "-y", *args])


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    """Tiny files in several containers; the stereo source has L = 0.4 and R = 0.2 sines."""
    d = tmp_path_factory.mktemp("media")
    t = np.arange(int(SR_IN * SECONDS)) / SR_IN
    tone = np.sin(2 * np.pi * 300 * t)
    stereo = np.stack([0.4 * tone, 0.2 * tone], axis=1).astype(np.float32)  # [T, 2]
    files = {"wav": d / "stereo.wav"}
    sf.write(files["wav"], stereo, SR_IN, subtype="PCM_16")
    for ext, codec in [("flac", "flac"), ("mp3", "libmp3lame"), ("ogg", "libvorbis"), ("m4a", "aac")]:
        files[ext] = d / f"stereo.{ext}"
        ff("-i", str(files["wav"]), "-c:a", codec, str(files[ext]))
    files["mp4"] = d / "clip.mp4"  # 320x240 30 fps + 48 kHz stereo
    ff("-f", "lavfi", "-i", "testsrc=size=320x240:rate=30", "-f", "lavfi",
       "-i", "sine=f=440:sample_rate=48000", "-t", "1", "-ac", "2", "-c:v", "libx264",
       "-pix_fmt", "yuv420p", "-c:a", "aac", str(files["mp4"]))
    files["rotated"] = d / "rotated.mp4"  # phone-style display matrix: shown as 240x320
    ff("-display_rotation:v", "90", "-i", str(files["mp4"]), "-c", "copy", str(files["rotated"]))
    files["silent_mkv"] = d / "odd.mkv"  # odd size, no audio
    ff("-f", "lavfi", "-i", "testsrc=size=333x251:rate=24", "-t", "0.5", "-c:v", "mjpeg",
       str(files["silent_mkv"]))
    files["late_audio"] = d / "late_audio.mkv"  # audio starts 0.5 s after the video
    ff("-f", "lavfi", "-i", "testsrc=size=64x64:rate=25", "-itsoffset", "0.5", "-i", str(files["wav"]),
       "-t", "2", "-c:v", "mjpeg", "-c:a", "pcm_s16le", str(files["late_audio"]))
    files["cover_mp3"] = d / "cover.mp3"  # mp3 with cover art: not a video
    cover = d / "cover.png"
    write_png(cover, np.full((32, 32, 3), 200, np.uint8))
    ff("-i", str(files["wav"]), "-i", str(cover), "-map", "0", "-map", "1", "-c:a", "libmp3lame",
       "-c:v", "png", "-disposition:v", "attached_pic", str(files["cover_mp3"]))
    files["text"] = d / "notes.mp4"
    files["text"].write_text("this is not a video\n" * 20)
    files["empty"] = d / "empty.mp4"
    files["empty"].write_bytes(b"")
    return files


def test_ffmpeg_exe_is_cached_and_runs():
    exe = ffmpeg_exe()
    assert os.access(exe, os.X_OK)
    assert ffmpeg_exe() is exe
    assert "ffmpeg version" in run_ffmpeg(["-version"]).stdout.decode()


def test_run_ffmpeg_failure_carries_stderr_tail(tmp_path):
    with pytest.raises(FFmpegError) as err:
        run_ffmpeg(["-i", str(tmp_path / "absent.mp4"), "-f", "null", "-"])
    assert err.value.returncode != 0
    assert "No such file or directory" in err.value.stderr_tail
    assert "No such file or directory" in str(err.value)


def test_run_ffmpeg_reports_progress(tmp_path):
    blocks = []
    run_ffmpeg(["-f", "lavfi", "-i", "testsrc=size=32x32:rate=25", "-t", "1", "-f", "null", "-"],
               on_progress=blocks.append)
    assert blocks[-1]["progress"] == "end"
    assert int(blocks[-1]["frame"]) == 25


def test_probe_video_with_audio(media):
    info = probe(media["mp4"])
    assert "mp4" in info.format_name
    assert info.duration == pytest.approx(1.0, abs=0.05)
    v, a = info.video, info.audio
    assert (v.codec, v.width, v.height, v.avg_fps, v.real_fps) == ("h264", 320, 240, 30.0, 30.0)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 48000, 2)
    assert not info.variable_fps
    assert info.to_dict()["video"]["width"] == 320


def test_probe_rotation_swaps_displayed_size(media):
    v = probe(media["rotated"]).video
    assert abs(v.rotation) == 90 and (v.width, v.height) == (240, 320)


def test_probe_odd_size_without_audio(media):
    info = probe(media["silent_mkv"])
    assert info.format_name.startswith("matroska")
    assert (info.video.width, info.video.height, info.video.avg_fps) == (333, 251, 24.0)
    assert info.audio is None


def test_probe_audio_only_and_cover_art(media):
    flac = probe(media["flac"])
    assert flac.video is None and (flac.audio.sample_rate, flac.audio.channels) == (SR_IN, 2)
    assert flac.duration == pytest.approx(SECONDS, abs=0.01)
    mp3 = probe(media["cover_mp3"])
    assert mp3.video_streams and mp3.video_streams[0].attached_pic
    assert mp3.video is None and mp3.audio.codec == "mp3"


@pytest.mark.parametrize("name", ["text", "empty"])
def test_probe_rejects_non_media(media, name):
    with pytest.raises(MediaError, match="cannot read it as media"):
        probe(media[name])


def test_probe_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")


def test_parse_probe_variable_rate_and_layouts():
    stderr = """Input #0, matroska,webm, from 'x.mkv':
  Duration: 00:01:02.50, start: 0.007000, bitrate: 1200 kb/s
  Stream #0:0(eng): Video: h264 (Main), yuv420p(tv, bt709, progressive), 1920x1080 \
[SAR 4:3 DAR 16:9], 29.47 fps, 90k tbr, 1k tbn (default)
    Metadata:
      DURATION        : 00:01:02.500000000
  Stream #0:1(eng): Audio: opus, 48000 Hz, 5.1(side), fltp (default)
  Stream #0:2: Audio: pcm_s24le, 96000 Hz, 3 channels, s32 (24 bit), 6912 kb/s
  Stream #0:3(eng): Subtitle: subrip
"""
    info = parse_probe(stderr, "x.mkv")
    assert info.duration == pytest.approx(62.5) and info.start == pytest.approx(0.007)
    v = info.video
    assert (v.width, v.height, v.avg_fps, v.real_fps, v.sar) == (1920, 1080, 29.47, 90000.0, (4, 3))
    assert info.variable_fps
    assert [(a.sample_rate, a.channels) for a in info.audio_streams] == [(48000, 6), (96000, 3)]
    assert parse_probe("Input #0, wav, from 'a':\n  Duration: N/A, bitrate: N/A\n").duration is None


def expected_len(seconds: float, rate: int = 16000) -> int:
    return round(seconds * rate)


@pytest.mark.parametrize("name", ["wav", "flac"])
def test_load_audio_lossless_is_the_channel_average(media, name):
    x = load_audio(media[name])
    assert x.dtype == np.float32 and x.ndim == 1
    assert len(x) == expected_len(SECONDS)
    # L = 0.4, R = 0.2 -> mono 0.3 (an average, not ffmpeg's default 0.707-weighted sum).
    middle = x[2000:-2000]
    assert np.sqrt(np.mean(middle**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.01)


@pytest.mark.parametrize("name", ["mp3", "ogg", "m4a", "mp4", "cover_mp3"])
def test_load_audio_lossy_and_video_containers(media, name):
    x = load_audio(media[name])
    seconds = 1.0 if name == "mp4" else SECONDS
    # Lossy codecs pad to whole frames; encoder delay is trimmed by first_pts=0.
    assert abs(len(x) - expected_len(seconds)) <= 0.03 * 16000
    assert -1.0 <= x.min() and x.max() <= 1.0
    assert np.sqrt(np.mean(x[2000:12000] ** 2)) > 0.05


def test_load_audio_other_rate(media):
    assert len(load_audio(media["wav"], sample_rate=22050)) == expected_len(SECONDS, 22050)


def test_load_audio_late_start_is_padded_with_silence(media):
    x = load_audio(media["late_audio"])
    assert np.abs(x[: int(0.45 * 16000)]).max() < 1e-3
    assert np.abs(x[int(0.55 * 16000): int(0.9 * 16000)]).max() > 0.2
    assert abs(len(x) - expected_len(2.0)) <= 2


def test_load_audio_without_audio_stream(media):
    with pytest.raises(NoAudioStreamError, match="no audio stream"):
        load_audio(media["silent_mkv"])


def test_write_wav_is_pcm16_mono_and_clipped(tmp_path):
    x = np.linspace(-1.5, 1.5, 16000, dtype=np.float32)
    path = tmp_path / "out" / "a.wav"
    write_wav(path, x)
    info = sf.info(path)
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (16000, 1, "PCM_16", 16000)
    y, _ = sf.read(path, dtype="float32")
    assert y.min() >= -1.0 and y.max() <= 1.0
    inside = np.abs(x) < 0.99
    assert np.abs(y[inside] - x[inside]).max() < 1e-4
    assert [p.name for p in path.parent.iterdir()] == ["a.wav"]  # no temporary left behind
    np.testing.assert_allclose(load_audio(path), y, atol=1e-4)


def test_frame_paths_sort_numerically(tmp_path):
    for name in ["10.jpg", "2.jpg", "0.jpg", "1.jpg", "0.lms", "bc.jpg", ".3.jpg.tmp"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in frame_paths(tmp_path)] == ["0.jpg", "1.jpg", "2.jpg", "10.jpg"]
    assert frame_count(tmp_path) == 4
    assert [p.name for p in frame_paths(tmp_path, ext="lms")] == ["0.lms"]


def test_image_roundtrips(tmp_path):
    rng = np.random.default_rng(0)
    smooth = np.zeros((48, 64, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 64)[None, :]  # red ramp: checks the channel order
    smooth[..., 2] = 40
    write_jpg(tmp_path / "a.jpg", smooth, quality=95)
    back = read_rgb(tmp_path / "a.jpg")
    assert back.shape == (48, 64, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(int) - smooth).mean() < 2.0
    for arr in [rng.integers(0, 256, (20, 30, 3), dtype=np.uint8),
                rng.integers(0, 256, (20, 30), dtype=np.uint8),
                rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)]:
        write_png(tmp_path / "b.png", arr)
        raw = cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED)
        expect = arr if arr.ndim == 2 else arr[..., [2, 1, 0, 3][: arr.shape[2]]]
        np.testing.assert_array_equal(raw, expect)
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "missing.jpg")
