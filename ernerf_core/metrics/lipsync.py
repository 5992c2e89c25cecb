"""A weights-free lip-sync score: does the mouth open when the audio is loud?

Mouth opening is measured on frames with MediaPipe face mesh (the landmarks stage's
tracker; its model ships in the wheel): the inner-lip gap (points 13-14) divided by the
outer eye-corner distance (33-263), so it does not depend on the face's size in the frame.
The audio envelope is the RMS of the 16 kHz waveform in one 40 ms window per 25 fps frame.
The score is the Pearson correlation of the two, taken at the best lag within
+-``max_lag`` frames (like SyncNet's offset search), so a constant audio-visual delay does
not hide a good sync.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
LEFT_EYE_OUTER, RIGHT_EYE_OUTER = 33, 263
FPS = 25


def mouth_opening_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """[N, 478 (or 468), 2+] face-mesh points -> [N] lip gap / eye distance (NaN rows stay NaN)."""
    lms = np.asarray(landmarks, dtype=np.float64)[..., :2]
    gap = np.linalg.norm(lms[:, UPPER_INNER_LIP] - lms[:, LOWER_INNER_LIP], axis=-1)
    eyes = np.linalg.norm(lms[:, LEFT_EYE_OUTER] - lms[:, RIGHT_EYE_OUTER], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return gap / eyes


def mouth_opening(frames: Iterable[np.ndarray]) -> np.ndarray:
    """RGB frames (one clip, in order) -> [N] mouth opening, NaN where no face was found."""
    from ..media.face_mesh import MeshTracker  # the landmarks stage's tracker, same settings

    with MeshTracker(max_faces=1) as tracker:
        lms = [mesh if mesh is not None else np.full((478, 3), np.nan)
               for mesh, _ in (tracker(np.ascontiguousarray(f)) for f in frames)]
    return mouth_opening_from_landmarks(np.stack(lms)) if lms else np.zeros(0)


def audio_envelope(wav: np.ndarray, sample_rate: int, n_frames: int, fps: int = FPS) -> np.ndarray:
    """[S] mono waveform -> [n_frames] RMS in a 1/fps window centred on each frame's time.

    Frame i shows time i/fps; samples past the end count as silence.
    """
    wav = np.asarray(wav, dtype=np.float64)
    hop = sample_rate / fps
    half = int(round(hop / 2))
    env = np.zeros(n_frames)
    for i in range(n_frames):
        centre = int(round(i * hop))
        window = wav[max(0, centre - half): max(0, centre + half)]
        env[i] = np.sqrt(np.mean(window**2)) if window.size else 0.0
    return env


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Correlation over the entries where both are finite; NaN when fewer than 3 or constant."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def lagged_correlation(video: np.ndarray, audio: np.ndarray, max_lag: int = 2) -> tuple[float, int]:
    """Best Pearson correlation of video[t] with audio[t - lag] over |lag| <= max_lag.

    Returns (correlation, lag in frames); a positive lag means the mouth trails the audio.
    """
    video, audio = np.asarray(video, np.float64), np.asarray(audio, np.float64)
    if video.shape != audio.shape:
        raise ValueError(f"length mismatch: {video.shape} video vs {audio.shape} audio values")
    best, best_lag = float("nan"), 0
    n = len(video)
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            r = pearson(video[lag:], audio[: n - lag])
        else:
            r = pearson(video[: n + lag], audio[-lag:])
        if np.isfinite(r) and not (np.isfinite(best) and r <= best):
            best, best_lag = r, lag
    return best, best_lag


def lipsync_score(opening: np.ndarray, wav: np.ndarray, sample_rate: int,
                  max_lag: int = 2) -> dict[str, float | int | None]:
    """Score a clip: mouth opening per frame vs the envelope of its audio."""
    envelope = audio_envelope(wav, sample_rate, len(opening))
    corr, lag = lagged_correlation(opening, envelope, max_lag)
    return {
        "audio_envelope_corr": None if not np.isfinite(corr) else corr,
        "lag_frames": lag,
        "face_found_share": float(np.isfinite(opening).mean()) if len(opening) else 0.0,
    }
