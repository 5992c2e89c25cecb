"""Run a transformers speech encoder (HuBERT, wav2vec2) over long audio at exactly 50 Hz.

Both models start with the same convolutional front end: receptive field 400 samples,
stride 320 (20 ms). Output step ``t`` sees samples ``[320 t, 320 t + 400)``, so a signal
of ``320 M + 80`` samples gives exactly ``M`` steps; step ``t`` is centred at
``20 t + 12.5`` ms.

Memory stays bounded on long audio by running overlapping windows: the steps are cut into
cores of ``CHUNK_STEPS`` (20 s), each run with ``CONTEXT_STEPS`` (5 s) of real signal on
either side (less at the ends of the audio) and only the core's steps kept. Every window
starts on a multiple of 320 samples, so its steps are the one-pass steps. A layer-normalised
front end (the large models') and the positional convolution (128 steps wide) are local:
with no attention layers the chunked result equals one pass to float precision (tested).
(The base models' front end uses group norm over the whole window, which is not local.)
Self-attention is global, so a chunk's core sees 5 s around it instead of the whole file;
the reference (GeneFace, ER-NeRF) cuts HuBERT at hard 20 s boundaries with no context.

The waveform is normalised (zero mean, unit variance, as the checkpoint's feature
extractor says) over the whole file before chunking, so every chunk sees the same scale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import StageError
from ..progress import progress
from .windows import SAMPLE_RATE, SAMPLES_PER_STEP, STEP_HZ

RECEPTIVE_FIELD = 400  # samples seen by one output step
TAIL = RECEPTIVE_FIELD - SAMPLES_PER_STEP  # 80: extra samples so M steps need 320 M + 80
CHUNK_STEPS = 1000  # 20 s per core
CONTEXT_STEPS = 250  # 5 s on each side


def check_front_end(subject: str, backend: str, name: str, config: Any) -> None:
    """The 20 ms step / 25 ms receptive field every alignment here relies on."""
    stride, field = 1, 1
    for kernel, step in zip(config.conv_kernel, config.conv_stride, strict=True):
        field += (kernel - 1) * stride
        stride *= step
    if (stride, field) != (SAMPLES_PER_STEP, RECEPTIVE_FIELD):
        raise StageError(subject, "audio_features",
                         f"{backend} checkpoint '{name}' has a front end of stride {stride} and receptive "
                         f"field {field} samples, not {SAMPLES_PER_STEP}/{RECEPTIVE_FIELD} (20 ms steps)",
                         "use a HuBERT / wav2vec2 checkpoint with the standard convolutional front end")


def model_input(subject: str, preprocessor: Any, samples: np.ndarray, n_steps: int) -> np.ndarray:
    """``samples [T]`` at 16 kHz -> normalised input ``[320 n_steps + 80]`` float32."""
    extractor = getattr(preprocessor, "feature_extractor", preprocessor)
    if getattr(extractor, "sampling_rate", SAMPLE_RATE) != SAMPLE_RATE:
        raise StageError(subject, "audio_features",
                         f"the checkpoint's feature extractor expects {extractor.sampling_rate} Hz audio",
                         f"use a checkpoint trained on {SAMPLE_RATE} Hz speech")
    values = extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="np").input_values[0]
    values = np.asarray(values, dtype=np.float32)  # [T], zero mean unit variance if do_normalize
    target = SAMPLES_PER_STEP * n_steps + TAIL
    values = values[:target]
    # Zero is the mean of the normalised signal: padding adds nothing but length.
    return np.pad(values, (0, target - len(values)))


def encode_steps(run: Callable[[Any], Any], values: np.ndarray, n_steps: int, *,
                 chunk_steps: int | None = None, context_steps: int | None = None,
                 device: Any = "cpu", desc: str = "encoder") -> np.ndarray:
    """``values [320 M + 80]`` -> ``[M, C]`` float32, ``run([1, S] tensor) -> [1, S', C]`` per window.

    ``chunk_steps`` / ``context_steps`` default to the module's ``CHUNK_STEPS`` / ``CONTEXT_STEPS``;
    each window is moved to ``device`` (where the model is).
    """
    import torch

    chunk_steps = CHUNK_STEPS if chunk_steps is None else chunk_steps
    context_steps = CONTEXT_STEPS if context_steps is None else context_steps
    assert len(values) == SAMPLES_PER_STEP * n_steps + TAIL, (len(values), n_steps)
    signal = torch.from_numpy(np.ascontiguousarray(values, dtype=np.float32))
    if n_steps <= chunk_steps + 2 * context_steps:
        cores = [(0, n_steps)]  # fits in one window: one pass
    else:
        cores = [(a, min(a + chunk_steps, n_steps)) for a in range(0, n_steps, chunk_steps)]
    pieces = []
    with torch.inference_mode():
        for a, b in progress(cores, desc=desc, unit="chunk"):
            s0, s1 = max(0, a - context_steps), min(n_steps, b + context_steps)
            window = signal[SAMPLES_PER_STEP * s0: SAMPLES_PER_STEP * s1 + TAIL]
            out = run(window[None].to(device))[0]  # [s1 - s0, C]
            assert out.shape[0] == s1 - s0, (out.shape, s0, s1)
            pieces.append(out[a - s0: b - s0].float().cpu().numpy())
    return np.concatenate(pieces).astype(np.float32)


def chunk_layout() -> dict[str, Any]:
    """How long audio is cut (recorded in the manifest)."""
    return {"chunk_seconds": CHUNK_STEPS / STEP_HZ, "context_seconds": CONTEXT_STEPS / STEP_HZ,
            "normalised": "whole file, before chunking"}
