"""`deepspeech` backend: the reference's DeepSpeech 0.1.0 logits ``[N, 16, 29]`` (optional extra).

What AD-NeRF / ER-NeRF run (``deepspeech_features``, after VOCA), with TensorFlow and the
user's frozen graph (``deepspeech-0_1_0-b90017e8.pb`` / ``output_graph.pb``):

1. 16 kHz audio as 16-bit integer values.
2. MFCC as python_speech_features computes it by default: pre-emphasis 0.97, 25 ms
   rectangular frames every 10 ms (zero padded at the end), 512-point power spectrum,
   26 triangular mel filters over 0-8000 Hz, natural log, orthonormal DCT-II keeping all 26
   coefficients, sinusoidal lifter 22, coefficient 0 replaced by the log frame energy.
3. Every second MFCC frame (50 Hz; step ``k`` covers samples ``[320 k, 320 k + 400)``),
   each with 9 frames of context on either side (zeros past the ends): ``[T, 19 * 26]``,
   standardised with the mean and standard deviation of the whole array.
4. The graph's ``logits`` for ``input_node`` / ``input_lengths``: ``[T, 1, 29]``.
5. Linear interpolation to 50 Hz over the audio's duration (``2N`` steps; for audio of
   exactly N frames, T is already 2N), then windows as the reference: frame ``i`` gets
   steps ``2i-8 .. 2i+7`` (zeros past either end).

TensorFlow is not a dependency (``pip install 'ernerf-core[deepspeech]'``); when it or the
graph is missing the backend fails at once, saying what to install and where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from scipy.fft import dct

from ..errors import StageError
from .windows import SAMPLE_RATE, STEP_HZ, STEPS_PER_FRAME, WINDOW_STEPS, frame_windows

STAGE = "audio_features"
# Where AD-NeRF's extractor keeps the graph it fetched: reused when present.
DEFAULT_GRAPH = "~/.tensorflow/models/deepspeech-0_1_0-b90017e8.pb"
VOCAB = 29
N_CEPSTRUM = 26
N_CONTEXT = 9
FIRST_STEP = -WINDOW_STEPS // 2

# python_speech_features.mfcc defaults used by the reference.
_FRAME = 400  # 25 ms
_HOP = 160  # 10 ms
_NFFT = 512
_N_FILTERS = 26
_PREEMPHASIS = 0.97
_LIFTER = 22
_EPS = np.finfo(float).eps

_HOW_TO_GET_GRAPH = (
    "get the DeepSpeech 0.1.0 frozen graph the reference uses (deepspeech-0_1_0-b90017e8.pb, "
    "from the osmr/deepspeech_features v0.0.1 release, also what AD-NeRF downloads) and set "
    f"audio.checkpoint to its path or put it at {DEFAULT_GRAPH}; or use backend mel (no weights)")


def _hz_to_mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel) / 2595.0) - 1.0)


def mel_filterbank(n_filters: int = _N_FILTERS, nfft: int = _NFFT,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``[n_filters, nfft // 2 + 1]`` triangles on FFT bins ``floor((nfft+1) f / sr)``."""
    mels = np.linspace(_hz_to_mel(0.0), _hz_to_mel(sample_rate / 2), n_filters + 2)
    edges = np.floor((nfft + 1) * _mel_to_hz(mels) / sample_rate)  # [n_filters + 2] bin numbers
    k = np.arange(nfft // 2 + 1)[None, :]
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        rising = np.where((k >= lo) & (k < mid), (k - lo) / (mid - lo), 0.0)
        falling = np.where((k >= mid) & (k < hi), (hi - k) / (hi - mid), 0.0)
    return rising + falling


def mfcc(signal: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """``signal [T]`` (int16 scale) -> ``[F, 26]`` MFCC, F = 1 + ceil((T - 400) / 160)."""
    signal = np.asarray(signal, dtype=np.float64)
    emphasised = np.append(signal[:1], signal[1:] - _PREEMPHASIS * signal[:-1])
    n = len(emphasised)
    n_frames = 1 if n <= _FRAME else 1 + int(np.ceil((n - _FRAME) / _HOP))
    padded = np.pad(emphasised, (0, (n_frames - 1) * _HOP + _FRAME - n))
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FRAME)[::_HOP]  # [F, 400]
    power = np.abs(np.fft.rfft(frames, _NFFT)) ** 2 / _NFFT  # [F, 257]
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, _EPS, energy)
    banded = power @ mel_filterbank(sample_rate=sample_rate).T  # [F, 26]
    banded = np.where(banded == 0, _EPS, banded)
    cepstra = dct(np.log(banded), type=2, axis=1, norm="ortho")[:, :N_CEPSTRUM]
    cepstra *= 1.0 + (_LIFTER / 2.0) * np.sin(np.pi * np.arange(N_CEPSTRUM) / _LIFTER)
    cepstra[:, 0] = np.log(energy)
    return cepstra


def network_input(samples: np.ndarray) -> np.ndarray:
    """``samples [T]`` float in [-1, 1] at 16 kHz -> standardised ``[T50, 494]`` float32."""
    pcm = np.clip(np.round(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    steps = mfcc(pcm)[::2]  # [T50, 26]: the network's stride is 2 MFCC frames
    context = np.zeros((N_CONTEXT, N_CEPSTRUM))
    padded = np.concatenate([context, steps, context])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * N_CONTEXT + 1, axis=0)  # [T50, 26, 19]
    flat = windows.transpose(0, 2, 1).reshape(len(steps), -1)  # [T50, 19 * 26], past to future
    return ((flat - flat.mean()) / flat.std()).astype(np.float32)


def logits_to_windows(logits: np.ndarray, n_frames: int) -> np.ndarray:
    """Network output ``[T, 29]`` at 50 Hz -> ``[N, 16, 29]``: resampled to 2N steps, windowed."""
    n_steps = STEPS_PER_FRAME * n_frames
    times_in = np.arange(len(logits)) / STEP_HZ
    times_out = np.arange(n_steps) / STEP_HZ
    steps = np.stack([np.interp(times_out, times_in, logits[:, c]) for c in range(logits.shape[1])], axis=1)
    return frame_windows(steps, n_frames, first=FIRST_STEP)


def graph_path(subject: str, checkpoint: str | None) -> Path:
    path = Path(os.path.expanduser(checkpoint or DEFAULT_GRAPH))
    if not path.is_file():
        problem = (f"DeepSpeech graph '{checkpoint}' not found (no file {path.resolve()})" if checkpoint
                   else f"no DeepSpeech graph at {path} and audio.checkpoint is not set")
        raise StageError(subject, STAGE, problem, _HOW_TO_GET_GRAPH)
    return path


def import_tensorflow(subject: str):
    try:
        import tensorflow as tf
    except ImportError:
        raise StageError(subject, STAGE, "the deepspeech backend needs TensorFlow, which is not installed",
                         "pip install 'ernerf-core[deepspeech]' (tensorflow-cpu) in this environment, "
                         "or use backend mel, hubert or wav2vec") from None
    return tf


def graph_logits(tf: Any, subject: str, path: Path, x: np.ndarray) -> np.ndarray:
    """Run the frozen graph (TensorFlow module ``tf``) on ``x [T, 494]`` -> logits ``[T, 29]``."""
    graph = tf.Graph()
    try:
        graph_def = tf.compat.v1.GraphDef()
        graph_def.ParseFromString(path.read_bytes())
        with graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="deepspeech")
        logits = graph.get_tensor_by_name("deepspeech/logits:0")
        inputs = graph.get_tensor_by_name("deepspeech/input_node:0")
        lengths = graph.get_tensor_by_name("deepspeech/input_lengths:0")
    except Exception as err:  # protobuf DecodeError, KeyError for other DeepSpeech versions
        raise StageError(subject, STAGE, f"{path} is not the DeepSpeech 0.1.0 frozen graph "
                         f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})",
                         _HOW_TO_GET_GRAPH) from None
    with tf.compat.v1.Session(graph=graph) as session:
        out = session.run(logits, feed_dict={inputs: x[np.newaxis], lengths: [x.shape[0]]})
    out = np.asarray(out)  # time-major [T, 1, 29]
    if out.ndim != 3 or out.shape[1:] != (1, VOCAB):
        raise StageError(subject, STAGE, f"{path} gives logits of shape {out.shape}, not [T, 1, {VOCAB}]",
                         _HOW_TO_GET_GRAPH)
    return out[:, 0, :]


def deepspeech_features(subject: str, samples: np.ndarray, n_frames: int,
                        checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``samples [640 N]`` at 16 kHz -> (``[N, 16, 29]`` float32, facts for the manifest)."""
    path = graph_path(subject, checkpoint)
    tf = import_tensorflow(subject)  # both checks before any work
    logits = graph_logits(tf, subject, path, network_input(samples))  # [T, 29]
    facts = {
        "checkpoint": checkpoint or DEFAULT_GRAPH,
        "checkpoint_source": str(path.resolve()),
        "model": {"type": "deepspeech-0.1.0", "vocab_size": VOCAB, "output": "logits"},
        "window": {"steps": WINDOW_STEPS, "step_hz": STEP_HZ,
                   "layout": "frame i = steps 2i-8..2i+7 (zeros outside); "
                             "step k covers samples [320k, 320k+400)"},
    }
    return logits_to_windows(logits, n_frames), facts
