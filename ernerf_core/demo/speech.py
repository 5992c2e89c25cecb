"""The committed demo speech clips and the mouth opening derived from their loudness."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.ndimage import gaussian_filter1d

ASSETS = Path(__file__).parent / "assets"
DEMO_SPEECH = ASSETS / "demo_speech.ogg"  # the subject's own voice (video audio track)
DRIVE_SPEECH = ASSETS / "drive_speech.ogg"  # a different voice and text, to drive rendering
SAMPLE_RATE = 16000
ENVELOPE_SMOOTH_FRAMES = 0.8  # Gaussian sigma (video frames) over the per-frame RMS
ENVELOPE_PEAK_PERCENTILE = 98  # this loudness opens the mouth fully (louder frames clip)
ENVELOPE_GAMMA = 0.7  # < 1 lifts quiet syllables a little


def load_clip(path: str | os.PathLike) -> np.ndarray:
    """[T] float32 mono samples at 16 kHz of a committed clip."""
    samples, rate = sf.read(str(path), dtype="float32", always_2d=True)
    if rate != SAMPLE_RATE:
        raise ValueError(f"{path}: expected {SAMPLE_RATE} Hz, found {rate} Hz")
    return samples.mean(axis=1)


def fit_length(samples: np.ndarray, seconds: float) -> np.ndarray:
    """Loop (longer) or trim (shorter) ``samples`` to exactly ``seconds`` at 16 kHz."""
    n = int(round(seconds * SAMPLE_RATE))
    reps = -(-n // len(samples))
    return np.tile(samples, reps)[:n]


def frame_rms(samples: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """[n_frames] float32 RMS of each video frame's 1/fps audio window (40 ms at 25 fps)."""
    edges = np.round(np.arange(n_frames + 1) * SAMPLE_RATE / fps).astype(int)
    padded = np.pad(samples, (0, max(0, edges[-1] - len(samples))))
    return np.array([np.sqrt(np.mean(padded[a:b] ** 2)) for a, b in zip(edges[:-1], edges[1:], strict=True)],
                    dtype=np.float32)


def mouth_envelope(samples: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """[n_frames] float32 0..1: how far the mouth opens in each video frame.

    The per-frame RMS relative to the clip's loud frames (``ENVELOPE_PEAK_PERCENTILE``),
    raised to ``ENVELOPE_GAMMA``, smoothed over time (a jaw cannot jump between frames) and
    normalised to peak at 1. Loud vowels open the mouth, consonants and pauses close it.
    """
    rms = frame_rms(samples, n_frames, fps)
    peak_rms = np.percentile(rms, ENVELOPE_PEAK_PERCENTILE)
    if peak_rms <= 0:
        return np.zeros(n_frames, np.float32)
    level = np.clip(rms / peak_rms, 0.0, 1.0) ** ENVELOPE_GAMMA
    smooth = gaussian_filter1d(level, ENVELOPE_SMOOTH_FRAMES, mode="nearest")
    return (smooth / smooth.max()).astype(np.float32)
