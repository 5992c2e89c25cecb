"""The streaming H.264 writer: browser-playable output, exact length, atomic on failure."""

from __future__ import annotations

import time

import numpy as np
import pytest

from ernerf_core.media.audio import write_wav
from ernerf_core.media.video import VideoWriter, inspect_video

SR = 16000


def _tone(path, seconds):
    t = np.arange(int(SR * seconds)) / SR
    write_wav(path, 0.3 * np.sin(2 * np.pi * 440 * t), SR)
    return path


def _frames(n, h, w):
    rng = np.random.default_rng(0)
    for i in range(n):
        f = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
        f[: h // 2] = i * 7 % 256
        yield f


@pytest.mark.parametrize("audio_seconds", [3.0, 0.4])  # longer and shorter than the video
def test_writes_browser_playable_video_with_audio(tmp_path, audio_seconds):
    wav = _tone(tmp_path / "a.wav", audio_seconds)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 33, 21, n_frames=30, audio=wav, audio_start=0.2) as vw:  # odd size: padded
        for f in _frames(30, 21, 33):
            vw.write(f)
    facts = inspect_video(out)
    assert facts["codec"] == "h264" and facts["pix_fmt"] == "yuv420p"
    assert (facts["width"], facts["height"]) == (34, 22)
    assert facts["fps"] == 25 and facts["frames"] == 30
    assert facts["audio_codec"] == "aac" and facts["faststart"]
    assert facts["duration"] == pytest.approx(1.2, abs=0.05)
    assert not list(tmp_path.glob(".*tmp*"))


def test_audio_does_not_run_ahead_of_slow_frames(tmp_path):
    """Frames that trickle in (a CPU render) must not let ffmpeg mux extra audio."""
    wav = _tone(tmp_path / "a.wav", 5.0)
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 32, 32, n_frames=6, audio=wav) as vw:
        for f in _frames(6, 32, 32):
            time.sleep(0.25)
            vw.write(f)
    facts = inspect_video(out)
    assert facts["frames"] == 6 and facts["duration"] == pytest.approx(0.24, abs=0.05)


def test_video_without_audio(tmp_path):
    out = tmp_path / "v.mp4"
    with VideoWriter(out, 32, 32) as vw:
        for f in _frames(5, 32, 32):
            vw.write(f)
    facts = inspect_video(out)
    assert facts["frames"] == 5 and facts["audio_codec"] is None


def test_failure_leaves_no_file(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(out, 32, 32) as vw:
            vw.write(next(_frames(1, 32, 32)))
            raise RuntimeError("boom")
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(out, 32, 32):
            pass
    with pytest.raises(ValueError, match="uint8"):
        with VideoWriter(out, 32, 32) as vw:
            vw.write(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(ValueError, match="2 frames written, 3 announced"):
        with VideoWriter(out, 32, 32, n_frames=3) as vw:
            for f in _frames(2, 32, 32):
                vw.write(f)
    with pytest.raises(ValueError, match="n_frames"):
        with VideoWriter(out, 32, 32, audio=tmp_path / "a.wav"):
            pass
    assert list(tmp_path.iterdir()) == []
