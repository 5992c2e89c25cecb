"""A weights-free lip-sync score: does the mouth open when the audio is loud?

Mouth opening is measured on frames with MediaPipe face mesh (the landmarks stage's
tracker; its model ships in the wheel): the inner-lip gap (points 13-14) divided by the
outer eye-corner distance (33-263), so it does not depend on the face's size in the frame.
The audio envelope is the RMS of the 16 kHz waveform in one 40 ms window per 25 fps frame.
The score is the Pearson correlation of the two, taken at the best lag within
+-``max_lag`` frames (like SyncNet's offset search), so a constant audio-visual delay does
not hide a good sync.

Small val splits make a single correlation mostly noise (12 frames of a 5 s clip), so every
correlation is reported with its number of frames and a seeded moving-block bootstrap 95 %
interval (:func:`correlation_with_interval`). Beyond opening: mouth width (corner distance
61-291 over the eye distance: tells an "oo" from an "ee"), the spread of the rendered
opening against the truth's (:func:`spread_ratio`: an average mouth scores near 0), and the
audio-swap figure (:func:`audio_swap_figure`: does the mouth move when the audio changes?).
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


def _shifted(video: np.ndarray, audio: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(video)
    return (video[lag:], audio[: n - lag]) if lag >= 0 else (video[: n + lag], audio[-lag:])


def lipsync_score(opening: np.ndarray, wav: np.ndarray, sample_rate: int,
                  max_lag: int = 2) -> dict[str, float | int | None]:
    """Score a clip: mouth opening per frame vs the envelope of its audio.

    ``frames`` and ``ci95`` (block bootstrap, see :func:`correlation_with_interval`) belong
    to the correlation at the chosen lag; the lag search itself makes ``r`` a little
    optimistic, which the interval does not include.
    """
    envelope = audio_envelope(wav, sample_rate, len(opening))
    corr, lag = lagged_correlation(opening, envelope, max_lag)
    stats = correlation_with_interval(*_shifted(np.asarray(opening, np.float64), envelope, lag))
    return {
        "audio_envelope_corr": None if not np.isfinite(corr) else corr,
        "lag_frames": lag,
        "frames": stats["frames"],
        "ci95": stats["ci95"] if np.isfinite(corr) else None,
        "face_found_share": float(np.isfinite(opening).mean()) if len(opening) else 0.0,
    }


# ---- measurement that holds up: intervals, spreads, shape beyond opening -----------------------

MOUTH_LEFT, MOUTH_RIGHT = 61, 291  # face-mesh mouth corners


def mouth_width_from_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """[N, 478, 2+] face-mesh points -> [N] mouth-corner distance / eye distance ("oo" vs "ee")."""
    lms = np.asarray(landmarks, dtype=np.float64)[..., :2]
    width = np.linalg.norm(lms[:, MOUTH_LEFT] - lms[:, MOUTH_RIGHT], axis=-1)
    eyes = np.linalg.norm(lms[:, LEFT_EYE_OUTER] - lms[:, RIGHT_EYE_OUTER], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return width / eyes


def default_block(n: int) -> int:
    """Block length of the moving-block bootstrap: about n^(1/3) frames (at least 1)."""
    return max(1, int(np.ceil(n ** (1 / 3))))


def block_bootstrap_indices(n: int, n_boot: int, block: int, rng: np.random.Generator) -> np.ndarray:
    """[n_boot, n] indices of moving-block resamples: random contiguous blocks laid end to end.

    Neighbouring video frames are not independent (a mouth opens over several frames), so
    resampling single frames would make the interval too narrow; whole blocks keep the
    short-range dependence.
    """
    block = min(max(1, block), n)
    n_blocks = int(np.ceil(n / block))
    starts = rng.integers(0, n - block + 1, size=(n_boot, n_blocks))
    idx = (starts[:, :, None] + np.arange(block)[None, None, :]).reshape(n_boot, -1)
    return idx[:, :n]


def correlation_with_interval(a: np.ndarray, b: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                              block: int | None = None, seed: int = 0) -> dict:
    """Pearson r of the finite pairs, with their count and a seeded block-bootstrap interval.

    Returns ``{"r", "frames", "ci95": [low, high], "block"}``; ``r`` and the interval are
    None when fewer than 4 pairs (or a constant series) leave nothing to measure.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"length mismatch: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    n = int(a.size)
    block = default_block(n) if block is None else int(block)
    r = pearson(a, b) if n >= 3 else float("nan")
    out = {"r": None if not np.isfinite(r) else r, "frames": n, "ci95": None, "block": block}
    if n < 4 or out["r"] is None:
        return out
    idx = block_bootstrap_indices(n, n_boot, block, np.random.default_rng(seed))
    ra, rb = a[idx], b[idx]
    ra = ra - ra.mean(axis=1, keepdims=True)
    rb = rb - rb.mean(axis=1, keepdims=True)
    den = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        rs = (ra * rb).sum(1) / den
    rs = rs[np.isfinite(rs)]
    if rs.size >= n_boot // 2:
        tail = (1 - level) / 2 * 100
        out["ci95"] = [float(np.percentile(rs, tail)), float(np.percentile(rs, 100 - tail))]
    return out


def mean_with_interval(values: np.ndarray, *, n_boot: int = 2000, level: float = 0.95,
                       block: int | None = None, seed: int = 0) -> dict:
    """Mean of the finite values, their count and a block-bootstrap interval of the mean."""
    v = np.asarray(values, np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    block = default_block(n) if block is None else int(block)
    out = {"mean": float(v.mean()) if n else None, "frames": n, "ci95": None, "block": block}
    if n >= 4:
        means = v[block_bootstrap_indices(n, n_boot, block, np.random.default_rng(seed))].mean(axis=1)
        tail = (1 - level) / 2 * 100
        out["ci95"] = [float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))]
    return out


def spread_ratio(render: np.ndarray, truth: np.ndarray) -> dict:
    """Standard deviations of the rendered and true series (over frames finite in both), and
    their ratio: 1 = the render moves as much as the truth, 0 = an average mouth."""
    r, t = np.asarray(render, np.float64), np.asarray(truth, np.float64)
    ok = np.isfinite(r) & np.isfinite(t)
    if ok.sum() < 2:
        return {"render_std": None, "truth_std": None, "ratio": None, "frames": int(ok.sum())}
    sr, st = float(r[ok].std()), float(t[ok].std())
    return {"render_std": sr, "truth_std": st, "ratio": sr / st if st > 0 else None, "frames": int(ok.sum())}


def swap_shift(n: int) -> int:
    """The audio-swap offset: half the split (circular), so every frame gets distant audio."""
    return max(1, n // 2) if n > 1 else 0


def audio_swap_figure(render_own: np.ndarray, render_swapped: np.ndarray, truth: np.ndarray,
                      source: np.ndarray) -> dict:
    """How much the rendered mouth moves when each frame is given another frame's audio.

    ``render_swapped[k]`` was rendered with the pose and eyes of frame k but the audio window
    of frame ``source[k]``. The render's movement is the spread of ``render_swapped -
    render_own``; the truth's is the spread of ``truth[source] - truth`` (how much the mouth
    of a real speaker differs between those frames). ``ratio`` = render movement / truth
    movement: about 1 when the mouth follows the audio, 0 when the audio has no effect.
    ``corr_with_source_truth``: does the swapped render follow the truth of the frame whose
    audio it got (with frames and interval)?
    """
    own, swp, tru = (np.asarray(x, np.float64) for x in (render_own, render_swapped, truth))
    source = np.asarray(source, dtype=np.int64)
    moved = swp - own
    truth_moved = tru[source] - tru
    ok = np.isfinite(moved) & np.isfinite(truth_moved)
    render_movement = float(moved[ok].std()) if ok.sum() >= 2 else None
    truth_movement = float(truth_moved[ok].std()) if ok.sum() >= 2 else None
    ratio = (render_movement / truth_movement
             if render_movement is not None and truth_movement else None)
    return {"frames": int(ok.sum()), "render_movement": render_movement, "truth_movement": truth_movement,
            "ratio": ratio, "corr_with_source_truth": correlation_with_interval(swp, tru[source])}
