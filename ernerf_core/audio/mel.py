"""`mel` backend: log-mel windows ``[N, 16, 80]``, no weights, far faster than real time.

Exact layout (16 kHz input already fitted to ``640 N`` samples, see ``windows``):

- Power mel spectrogram (librosa): Hann window of 400 samples (25 ms), FFT size 400,
  hop 320 samples (20 ms, 50 Hz), 80 Slaney mel bands over 0-8000 Hz, ``center=False``.
- Step ``k`` is centred at ``20 k - 130`` ms (the signal gets 2280 zero samples on each
  side; STFT frame ``k`` covers padded samples ``[320 k, 320 k + 400)``), for
  ``k = 0 .. 2N + 13``.
- Window of frame ``i`` = steps ``2i .. 2i+15``, at ``40 i - 130 .. 40 i + 170`` ms, whose
  centre ``40 i + 20`` ms is the centre of frame ``i`` (which spans ``40 i .. 40 i + 40``
  ms): step centres run from 130 ms before the frame to 130 ms after it. Every step lies inside the
  padded signal, so there is no zero padding in feature space: steps past either end of
  the audio describe digital silence.
- Values: ``log10`` mel power relative to the file's loudest bin, floored 8 decades
  (80 dB) below it, mapped linearly to ``[-1, 1]`` (1 = loudest bin). Taking the level
  relative to the file makes the features independent of recording gain, so training
  audio and driving audio recorded at different levels give the same features. For
  near-silent files the reference level never drops below ``10**-3`` (about 50 dB under
  normal speech), so digital silence stays at -1 rather than being amplified.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from librosa.feature import melspectrogram  # at import: librosa's lazy loading costs ~1-3 s once

from .windows import SAMPLE_RATE, SAMPLES_PER_STEP, STEPS_PER_FRAME, WINDOW_STEPS, frame_windows

N_MELS = 80
N_FFT = 400  # 25 ms
HOP = SAMPLES_PER_STEP  # 320 samples = 20 ms
F_MAX = SAMPLE_RATE / 2
# Step k centred at 320 k - 2080 samples: 2280 = 2080 + N_FFT / 2 zeros before the signal.
EDGE_PAD = 2280
AMIN = 1e-11  # power floor (log10 -11)
REF_FLOOR = -3.0  # log10 reference level never below this
DYNAMIC_RANGE = 8.0  # decades kept below the reference
log = logging.getLogger("ernerf.audio")

WINDOW = {
    "steps": WINDOW_STEPS,
    "step_hz": 50,
    "layout": "frame i = steps 2i..2i+15; step k centred at 20k-130 ms; window centred on the frame",
    "n_fft": N_FFT,
    "hop": HOP,
    "n_mels": N_MELS,
    "scale": "log10 mel power relative to the file maximum, 80 dB range, mapped to [-1, 1]",
}


def mel_steps(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """``samples [640 N]`` float32 at 16 kHz -> log-mel steps ``[2N + 14, 80]`` float32."""
    padded = np.pad(np.asarray(samples, dtype=np.float32), (EDGE_PAD, EDGE_PAD))
    power = melspectrogram(
        y=padded, sr=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, win_length=N_FFT, window="hann",
        center=False, power=2.0, n_mels=N_MELS, fmin=0.0, fmax=F_MAX)  # [80, M]
    n_steps = STEPS_PER_FRAME * n_frames + WINDOW_STEPS - STEPS_PER_FRAME
    assert power.shape[1] == n_steps, (power.shape, n_steps)
    level = np.log10(np.maximum(power, AMIN))
    ref = max(float(level.max()), REF_FLOOR)
    scaled = np.maximum((level - ref) / (DYNAMIC_RANGE / 2) + 1.0, -1.0)
    return scaled.T.astype(np.float32)


def mel_features(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """``samples [640 N]`` -> ``[N, 16, 80]`` float32 windows, one per 25 fps frame."""
    return frame_windows(mel_steps(samples, n_frames), n_frames, first=0)


def mel_backend(subject: str, samples: np.ndarray, n_frames: int,
                checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The stage's backend call: (``[N, 16, 80]``, facts for the manifest)."""
    if checkpoint:
        log.warning("%s: audio.checkpoint %r is ignored: the mel backend has no weights", subject, checkpoint)
    return mel_features(samples, n_frames), {"checkpoint": None, "window": WINDOW}
