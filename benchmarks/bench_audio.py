"""Audio features: seconds of audio processed per second of wall time, against real time.

- `mel` features alone (warm, 60 s of audio) and the whole stage on a 60 s 44.1 kHz stereo
  WAV (decode + resample + features + writes, in a fresh state: first call pays librosa's
  lazy imports), must be >= 100x real time.
- A HuBERT-large-sized encoder (24 layers, hidden 1024, 16 heads, random weights built from
  the config, nothing downloaded) through the same chunked path the `hubert` backend uses.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

SR = 16000


def _speechlike(seconds: float, rate: int = SR, seed: int = 0) -> np.ndarray:
    """Noise shaped by a 4 Hz syllable envelope ``[T]`` float32 (content does not change speed)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * rng.standard_normal(len(t)) * (0.55 + 0.45 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)


def _row(name: str, audio_seconds: float, wall: float, **extra) -> dict:
    return {"name": name, "audio_seconds": audio_seconds, "seconds": round(wall, 4), "baseline": "real time",
            "ratio": round(audio_seconds / wall, 2), **extra}


def bench_mel_stage() -> list[dict]:
    """The whole stage twice: the first call pays librosa's one-time lazy imports."""
    import soundfile as sf

    from ernerf_core.audio import extract_features

    seconds = 60.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "in.wav"
        stereo = np.stack([_speechlike(seconds, 44100), _speechlike(seconds, 44100, seed=1)], axis=1)
        sf.write(wav, stereo, 44100, subtype="PCM_16")
        for call in ("first call", "warm"):
            start = time.perf_counter()
            extract_features(subject="bench", audio=wav, features_path=Path(tmp) / "f.npy",
                             manifest_path=Path(tmp) / "f.json", backend="mel")
            rows.append(_row(f"mel stage, {call} (decode 44.1 kHz stereo + features + write)", seconds,
                             time.perf_counter() - start))
    return rows


def bench_mel_features(repeats: int = 5) -> dict:
    from ernerf_core.audio.mel import mel_features

    seconds = 60.0
    samples = _speechlike(seconds)
    n = int(seconds * 25)
    mel_features(samples, n)  # warm
    start = time.perf_counter()
    for _ in range(repeats):
        mel_features(samples, n)
    return _row("mel features [1500, 16, 80], warm", seconds, (time.perf_counter() - start) / repeats)


def bench_hubert_large(seconds: float = 10.0) -> dict:
    import torch
    from transformers import HubertConfig, HubertModel

    from ernerf_core.audio import encoder

    torch.manual_seed(0)
    config = HubertConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                          intermediate_size=4096, feat_extract_norm="layer", do_stable_layer_norm=True,
                          conv_bias=True)
    model = HubertModel(config).eval()
    params = sum(p.numel() for p in model.parameters())

    def run(x):
        return model(x).last_hidden_state

    values = _speechlike(1.0)
    encoder.encode_steps(run, np.pad(values, (0, 80)), 50)  # warm
    n_steps = int(seconds * 50)
    values = np.pad(_speechlike(seconds), (0, 80))
    start = time.perf_counter()
    states = encoder.encode_steps(run, values, n_steps)
    wall = time.perf_counter() - start
    assert states.shape == (n_steps, 1024)
    return _row("HuBERT-large-sized encoder (random weights), CPU", seconds, wall,
                params_millions=round(params / 1e6, 1), threads=torch.get_num_threads())


def run() -> list[dict]:
    return [*bench_mel_stage(), bench_mel_features(), bench_hubert_large()]


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
