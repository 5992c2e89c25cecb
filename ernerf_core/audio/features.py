"""Stage `audio_features`: any audio or video file -> per-frame features + manifest.

The same function serves the subject's own ``aud.wav`` (rule ``audio_features``) and every
driving audio (rule ``driving_features``, which also keeps the 16 kHz mono WAV).
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StageError
from ..fsio import atomic_file, write_manifest
from .windows import FPS, SAMPLE_RATE, SAMPLES_PER_FRAME, fit_to_frames, frame_count

STAGE = "audio_features"
NOISE_FLOOR_DBFS = -50.0  # audio.noise_floor_dbfs default: about a quiet room tone, far above digital silence
log = logging.getLogger("ernerf.audio")

# backend -> file name in the subject folder (ERNERF_FACTS.md section 1); must match
# AUDIO_FEATURE_FILE in workflow/rules/common.smk.
AUDIO_FEATURE_FILE = {
    "mel": "aud_mel.npy",
    "hubert": "aud_hu.npy",
    "wav2vec": "aud_eo.npy",
    "deepspeech": "aud.npy",
    "phones": "aud_ph.npy",
    "mel_phones": "aud_mel_ph.npy",
}
# backend -> (module, function); imported only when used (transformers / TensorFlow are slow).
_BACKENDS = {
    "mel": ("ernerf_core.audio.mel", "mel_backend"),
    "hubert": ("ernerf_core.audio.hubert", "hubert_features"),
    "wav2vec": ("ernerf_core.audio.wav2vec", "wav2vec_features"),
    "deepspeech": ("ernerf_core.audio.deepspeech", "deepspeech_features"),
    "phones": ("ernerf_core.audio.phones", "phones_backend"),
    "mel_phones": ("ernerf_core.audio.phones", "mel_phones_backend"),
}


def extract_features(subject: str, audio: str | os.PathLike, features_path: str | os.PathLike,
                     manifest_path: str | os.PathLike, backend: str = "mel",
                     checkpoint: str | None = None,
                     wav_path: str | os.PathLike | None = None,
                     noise_floor_dbfs: float | None = NOISE_FLOOR_DBFS) -> dict[str, Any]:
    """Features ``[N, W, C]`` float32 for the N = round(seconds * 25) frames of ``audio``.

    ``audio`` is any file ffmpeg reads (any rate, channel count, container); it is decoded to
    16 kHz mono and fitted to exactly ``N / 25`` s. ``wav_path`` also gets that audio as a
    16-bit WAV (without the noise floor). ``noise_floor_dbfs``: the features are computed on the
    audio plus seeded white noise at this RMS level (None: none), see :func:`with_noise_floor`.
    Returns the manifest written to ``manifest_path``.
    """
    if backend not in _BACKENDS:
        raise StageError(subject, STAGE, f"unknown audio backend '{backend}'",
                         f"use one of {', '.join(_BACKENDS)}")
    source, samples = _decode(subject, audio)
    n_frames = frame_count(len(samples))
    if n_frames < 1:
        raise StageError(subject, STAGE, f"{audio} holds {len(samples) / SAMPLE_RATE * 1000:.1f} ms of "
                         f"audio, less than half a 25 fps frame", "give an audio file of at least 20 ms")
    fitted = fit_to_frames(samples, n_frames)  # [640 N]
    duration = len(samples) / SAMPLE_RATE

    module, func = _BACKENDS[backend]
    started = time.perf_counter()
    compute = getattr(importlib.import_module(module), func)  # the backend's libraries, once per process
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    features, facts = compute(subject, with_noise_floor(fitted, noise_floor_dbfs), n_frames, checkpoint)
    seconds = time.perf_counter() - started
    if features.shape[0] != n_frames or features.dtype != np.float32 or not np.isfinite(features).all():
        raise RuntimeError(f"{backend} features {features.shape} {features.dtype} for {n_frames} frames")
    log.info("%s: %s features %s for %.2f s of audio (%d frames) in %.2f s (%.0fx real time; "
             "%.1f s more to import the backend's libraries)", subject, backend, tuple(features.shape),
             duration, n_frames, seconds, duration / max(seconds, 1e-9), load_seconds)

    if wav_path is not None:
        from ..media.audio import write_wav

        write_wav(wav_path, fitted, SAMPLE_RATE)
    with atomic_file(features_path) as tmp:
        np.save(tmp, features)
    return write_manifest(
        manifest_path, stage=STAGE, subject=subject,
        params={"backend": backend, "checkpoint": checkpoint, "noise_floor_dbfs": noise_floor_dbfs},
        backend=backend,
        checkpoint=facts.pop("checkpoint", None),
        feature_file=Path(features_path).name,
        features=os.fspath(features_path),
        feature_shape=list(features.shape),
        feature_dim=int(features.shape[2]),
        window_steps=int(features.shape[1]),
        frames=n_frames,
        fps=FPS,
        duration_seconds=duration,
        audio_seconds=n_frames * SAMPLES_PER_FRAME / SAMPLE_RATE,
        sample_rate=SAMPLE_RATE,
        wav=os.fspath(wav_path) if wav_path is not None else None,
        source=source,
        extraction_seconds=round(seconds, 3),
        backend_import_seconds=round(load_seconds, 3),
        **facts,
    )


def with_noise_floor(samples: np.ndarray, dbfs: float | None, seed: int = 0) -> np.ndarray:
    """``samples`` plus seeded white noise of RMS ``dbfs`` (relative to full scale 1.0).

    Why: a video's soundtrack always has room tone (the 71 s anchor's quietest 40 ms is at
    -53 dBFS), while synthesised or edited driving audio often holds digital silence, whose
    features (log-mel at its floor everywhere) lie outside anything a subject was trained on:
    rendered, the mouth and chin of the anchor break into speckled blotches in every pause.
    With the floor the pauses look like the training pauses; speech, tens of dB louder, is
    unchanged to the eye."""
    if dbfs is None:
        return samples
    noise = np.random.default_rng(seed).standard_normal(samples.shape[0]).astype(np.float32)
    return (samples + noise * np.float32(10.0 ** (float(dbfs) / 20.0))).astype(np.float32)


def _decode(subject: str, audio: str | os.PathLike) -> tuple[dict[str, Any], np.ndarray]:
    """(source facts, float32 mono 16 kHz samples ``[T]``); unreadable input is a StageError."""
    from ..media.audio import NoAudioStreamError, load_audio
    from ..media.ffmpeg import MediaError
    from ..media.probe import probe

    try:
        info = probe(audio)
        samples = load_audio(audio, SAMPLE_RATE, info=info)
    except FileNotFoundError:
        raise StageError(subject, STAGE, f"audio file {audio} does not exist",
                         "check the path in config (subjects / driving_audio)") from None
    except NoAudioStreamError:
        raise StageError(subject, STAGE, f"{audio} has no audio stream",
                         "give a file with sound (any audio format, or a video with an audio "
                         "track)") from None
    except MediaError as err:
        raise StageError(subject, STAGE, f"ffmpeg cannot decode {audio}: {str(err).splitlines()[0]}",
                         "give an audio or video file ffmpeg can read (wav, flac, mp3, m4a, "
                         "mp4...)") from None
    source = info.to_dict()
    source["decoded_seconds"] = len(samples) / SAMPLE_RATE
    return source, samples
