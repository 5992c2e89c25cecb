"""Audio of any container / codec / rate / channel count -> float32 mono, and WAV writing."""

from __future__ import annotations

import os

import numpy as np
import soundfile as sf

from ..fsio import atomic_file
from .ffmpeg import MediaError, run_ffmpeg
from .probe import MediaInfo, probe


class NoAudioStreamError(MediaError):
    """The file opens as media but has no audio stream."""


def load_audio(path: str | os.PathLike, sample_rate: int = 16000,
               info: MediaInfo | None = None) -> np.ndarray:
    """Decode the first audio stream of ``path`` to float32 mono ``[T]`` in [-1, 1].

    Any format ffmpeg reads (wav, flac, mp3, m4a, ogg, the audio of a video). The signal
    starts at the file's time 0: if the audio stream starts late it is preceded by silence
    (``aresample first_pts=0``), and timestamp gaps are filled, so sample ``k`` is at time
    ``k / sample_rate`` on the same clock as the video. ``info`` skips a second probe.
    Raises FileNotFoundError, MediaError (unreadable) or NoAudioStreamError.
    """
    info = info or probe(path)
    if info.audio is None:
        raise NoAudioStreamError(f"{path}: no audio stream (streams: "
                                 f"{len(info.video_streams)} video, 0 audio)")
    result = run_ffmpeg([
        "-loglevel", "error", "-i", os.fspath(path), "-map", "0:a:0", "-vn", "-sn", "-dn",
        # One resampler does rate, downmix and timing; rematrix_maxval=1 makes the downmix an
        # average (ffmpeg's default stereo->mono sums at 0.707 each and can clip).
        "-af", f"aresample={sample_rate}:ochl=mono:async=1:first_pts=0:rematrix_maxval=1.0,"
               f"aformat=sample_fmts=flt:channel_layouts=mono:sample_rates={sample_rate}",
        "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1",
    ])
    samples = np.frombuffer(result.stdout, dtype="<f4").astype(np.float32)  # [T]
    return np.clip(samples, -1.0, 1.0)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate: int = 16000) -> None:
    """Write float samples ``[T]`` (or ``[T, C]``) in [-1, 1] as 16-bit PCM WAV, atomically."""
    samples = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    with atomic_file(path) as tmp:
        sf.write(tmp, samples, sample_rate, subtype="PCM_16", format="WAV")
