"""`phones` and `mel_phones` backends: what is being said, as phone shares, with no download.

PocketSphinx 5 decodes the phones of the audio (its wheel carries the US English acoustic
model and a phone language model; ``allphone`` search, no words, no dictionary), about 15x
faster than real time on one CPU core. Unlike log-mel, a phone says "oo" or "aa" whatever the
voice and the loudness, which is what the mouth follows; the decoder's errors (it confuses
neighbouring phones, and is trained on US English) are the price.

Layout of ``phones`` ``[N, 16, 40]`` (16 kHz input fitted to ``640 N`` samples, see ``windows``):

- The decoder's 10 ms frames (100 Hz) are grouped in pairs: step ``k`` covers
  ``[20 k, 20 k + 20)`` ms and holds, per phone of :data:`PHONES` (39 ARPAbet phones and
  ``SIL``), the share of its two frames decoded as that phone (noise and filler units count as
  ``SIL``). Each step's shares sum to 1. A step quieter than :data:`SILENT_RMS` is ``SIL``
  whatever was decoded (on digital silence the decoder emits a phone).
- Window of frame ``i`` = steps ``2i - 7 .. 2i + 8``, whose centre ``40 i + 20`` ms is the
  centre of frame ``i``: the same 300 ms span as the ``mel`` windows. Steps before the start
  or past the end of the audio are silence (``SIL`` = 1).

``mel_phones`` ``[N, 16, 120]``: the ``mel`` window and the ``phones`` window of each frame,
side by side (mel channels first): loudness and spectrum from one, phonetic identity from
the other, over the same span.

``audio.checkpoint`` may name another PocketSphinx acoustic model folder (``mdef``,
``means``, ...); ``null`` = the wheel's ``en-us``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import StageError
from .windows import SAMPLE_RATE, STEPS_PER_FRAME, WINDOW_STEPS, frame_windows

STAGE = "audio_features"
PHONES = ("SIL", "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH",
          "IY", "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W",
          "Y", "Z", "ZH")
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}
FRAMES_PER_STEP = 2  # decoder frames (10 ms) per 20 ms step
LEAD_STEPS = 7  # window i starts at step 2i - 7
# CMU Sphinx's settings for phone decoding (the allphone search): wide beams, a language
# weight of 2 and a phone insertion penalty of 0.3
DECODER = {"lw": 2.0, "pip": 0.3, "beam": 1e-20, "pbeam": 1e-20}
SILENT_RMS = 1e-4  # -80 dBFS
log = logging.getLogger("ernerf.audio")

WINDOW = {
    "steps": WINDOW_STEPS,
    "step_hz": 50,
    "layout": "frame i = steps 2i-7..2i+8; step k = [20k, 20k+20) ms; window centred on the frame",
    "channels": list(PHONES),
    "scale": "share of the step's two 10 ms decoder frames decoded as each phone (sums to 1)",
}


def _model_paths(subject: str, checkpoint: str | None) -> tuple[str, str]:
    """(acoustic model folder, phone language model) of the decoder."""
    try:
        from pocketsphinx import get_model_path
    except ImportError:
        raise StageError(subject, STAGE, "the phones backend needs PocketSphinx, which is not installed",
                         "pip install pocketsphinx==5.0.3 (make install does)") from None
    root = Path(get_model_path()) / "en-us"
    hmm = Path(checkpoint) if checkpoint else root / "en-us"
    if not (hmm / "mdef").exists():
        raise StageError(subject, STAGE, f"{hmm} is not a PocketSphinx acoustic model (no mdef)",
                         "set audio.checkpoint to a model folder, or null for the one PocketSphinx ships")
    return os.fspath(hmm), os.fspath(root / "en-us-phone.lm.bin")


def decode_phones(subject: str, samples: np.ndarray, checkpoint: str | None = None) -> list[tuple[str, int, int]]:
    """``samples [T]`` float32 16 kHz -> ``[(phone, first frame, last frame)]`` in 10 ms frames."""
    from pocketsphinx import Decoder

    hmm, phone_lm = _model_paths(subject, checkpoint)
    decoder = Decoder(hmm=hmm, allphone=phone_lm, samprate=SAMPLE_RATE, loglevel="FATAL", **DECODER)
    pcm = (np.clip(np.asarray(samples, np.float32), -1.0, 1.0) * 32767).astype(np.int16)
    decoder.start_utt()
    decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
    decoder.end_utt()
    return [(seg.word, int(seg.start_frame), int(seg.end_frame)) for seg in decoder.seg()]


def silent_steps(samples: np.ndarray, n_frames: int) -> np.ndarray:
    """``[2N]`` bool: the 20 ms steps of ``samples [640 N]`` quieter than :data:`SILENT_RMS`."""
    steps = np.asarray(samples, np.float32)[: n_frames * 640].reshape(STEPS_PER_FRAME * n_frames, 320)
    return np.sqrt((steps.astype(np.float64) ** 2).mean(1)) < SILENT_RMS


def phone_steps(segments: list[tuple[str, int, int]], n_frames: int, silent: np.ndarray | None = None) -> np.ndarray:
    """Decoded segments -> ``[2N + 15, 40]`` float32 shares for steps ``-7 .. 2N + 7``;
    ``silent`` (``[2N]`` bool) steps are ``SIL``."""
    n_steps = STEPS_PER_FRAME * n_frames
    labels = np.zeros(n_steps * FRAMES_PER_STEP, np.int64)  # SIL where nothing was decoded
    for phone, start, end in segments:
        labels[max(0, start):max(0, min(end + 1, len(labels)))] = PHONE_INDEX.get(phone, 0)
    shares = np.zeros((n_steps, len(PHONES)), np.float32)
    np.add.at(shares, (np.arange(len(labels)) // FRAMES_PER_STEP, labels), 1.0 / FRAMES_PER_STEP)
    if silent is not None:
        shares[silent] = 0.0
        shares[silent, 0] = 1.0
    edge = np.zeros((LEAD_STEPS + 1, len(PHONES)), np.float32)
    edge[:, 0] = 1.0  # silence before and after the audio
    return np.concatenate([edge[:LEAD_STEPS], shares, edge])


def phone_windows(steps: np.ndarray, n_frames: int) -> np.ndarray:
    """:func:`phone_steps` -> ``[N, 16, 40]`` float32 windows, one per 25 fps frame."""
    return frame_windows(steps, n_frames, first=0)


def phones_backend(subject: str, samples: np.ndarray, n_frames: int,
                   checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The stage's backend call: (``[N, 16, 40]``, facts for the manifest); a warning when no
    phone is left."""
    segments = decode_phones(subject, samples, checkpoint)
    steps = phone_steps(segments, n_frames, silent_steps(samples, n_frames))
    body = steps[LEAD_STEPS:LEAD_STEPS + STEPS_PER_FRAME * n_frames]
    counts = Counter(PHONES[PHONE_INDEX.get(p, 0)] for p, _, _ in segments)
    facts = {"checkpoint": checkpoint, "window": WINDOW,
             "phones_decoded": sum(v for k, v in counts.items() if k != "SIL"),
             "speech_share": round(float(1.0 - body[:, 0].mean()), 3), "top_phones": dict(counts.most_common(8))}
    if facts["speech_share"] == 0:
        log.warning("%s: PocketSphinx found no phone in the audio (silent, or not speech): every phones "
                    "feature is silence", subject)
        facts["warning"] = "no phone decoded: the features are all silence"
    return phone_windows(steps, n_frames), facts


def mel_phones_backend(subject: str, samples: np.ndarray, n_frames: int,
                       checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """The stage's backend call: (``[N, 16, 120]`` = mel | phones, facts for the manifest)."""
    from .mel import WINDOW as MEL_WINDOW
    from .mel import mel_features

    phones, facts = phones_backend(subject, samples, n_frames, checkpoint)
    features = np.concatenate([mel_features(samples, n_frames), phones], axis=2)
    facts["window"] = {"mel": MEL_WINDOW, "phones": WINDOW, "channels": "80 mel, then 40 phones"}
    return features, facts
