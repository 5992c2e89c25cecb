"""Frame timing and per-frame windows over 50 Hz feature steps (ER-NeRF's AudioNet input).

Timing, shared by every backend:

- Audio is 16 kHz mono; video is 25 fps, so frame ``i`` spans samples ``[640 i, 640 (i+1))``.
- ``N = frame_count(samples) = round(seconds * 25)`` (halves round up), the number of frames
  ``normalize`` makes for a video of the same length; the audio is zero padded or trimmed
  at its end to exactly ``640 N`` samples (``fit_to_frames``) before any feature is taken.
- Features come as ``steps`` at 50 Hz (one per 320 samples), two per frame, and are cut into
  one window of ``16`` steps per frame with stride 2: window ``i`` holds steps
  ``[2 i + first, 2 i + first + 16)``, zeros where that runs past either end.
  The reference (AD-NeRF / RAD-NeRF / ER-NeRF) uses ``first = -8`` for DeepSpeech and
  wav2vec2 logits; each backend module says where its steps sit in time.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FPS = 25
STEP_HZ = 50
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
SAMPLES_PER_STEP = SAMPLE_RATE // STEP_HZ  # 320
STEPS_PER_FRAME = STEP_HZ // FPS  # 2
WINDOW_STEPS = 16


def frame_count(n_samples: int, sample_rate: int = SAMPLE_RATE, fps: int = FPS) -> int:
    """``round(n_samples / sample_rate * fps)`` with halves rounded up, in exact integers."""
    return (2 * int(n_samples) * fps + sample_rate) // (2 * sample_rate)


def fit_to_frames(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """``[T]`` -> ``[640 n_frames]`` float32: zero padded or trimmed at the end."""
    target = n_frames * SAMPLES_PER_FRAME
    samples = np.asarray(samples, dtype=np.float32)[:target]
    if len(samples) < target:
        samples = np.pad(samples, (0, target - len(samples)))
    return samples


def frame_windows(steps: np.ndarray, n_frames: int, first: int,
                  size: int = WINDOW_STEPS, stride: int = STEPS_PER_FRAME) -> np.ndarray:
    """``steps [M, C]`` -> ``[n_frames, size, C]`` float32, window i = steps[stride*i+first :][:size].

    Steps outside ``[0, M)`` are zeros (the reference zero pads its logits the same way).
    """
    steps = np.asarray(steps, dtype=np.float32)
    m, channels = steps.shape
    before = max(0, -first)
    last_needed = stride * (n_frames - 1) + first + size  # one past the last step used
    after = max(0, last_needed - m)
    padded = np.concatenate([np.zeros((before, channels), np.float32), steps,
                             np.zeros((after, channels), np.float32)])
    start = first + before  # index in `padded` of window 0's first step
    view = np.lib.stride_tricks.sliding_window_view(padded[start:], size, axis=0)  # [W, C, size]
    return np.ascontiguousarray(view[: stride * n_frames : stride].transpose(0, 2, 1))
