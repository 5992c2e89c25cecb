"""`wav2vec` backend: wav2vec2 CTC logits in 16-step windows, ``[N, 16, vocab]`` (44 for the reference).

As the reference (RAD-NeRF / ER-NeRF ``--asr_model cpierse/wav2vec2-large-xlsr-53-esperanto``,
saved as ``aud_eo.npy``): transformers ``Wav2Vec2ForCTC`` + its ``Wav2Vec2Processor``,
logits at 50 Hz, windowed like the reference's ``F.unfold(kernel 16, padding 8, stride 2)``:
frame ``i`` gets steps ``2i-8 .. 2i+7`` (zeros past either end). Step ``k`` covers samples
``[320 k, 320 k + 400)``, so the window's centre is at ``40 i + 2.5`` ms, the reference's
alignment. Differences from the reference, which runs 1.4 s windows (0.2 s context each
side) and normalises each window on its own: the waveform is normalised once over the
whole file and run in 30 s windows (see ``encoder``), so features do not depend on where a
window boundary falls, and there are exactly ``2N`` steps (``N`` windows) for ``N`` frames.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..device import resolve_device
from .checkpoints import load_local_checkpoint
from .encoder import check_front_end, chunk_layout, encode_steps, model_input
from .windows import STEPS_PER_FRAME, WINDOW_STEPS, frame_windows

DEFAULT_CHECKPOINT = "cpierse/wav2vec2-large-xlsr-53-esperanto"
FIRST_STEP = -WINDOW_STEPS // 2  # -8, the reference's unfold padding


def wav2vec_features(subject: str, samples: np.ndarray, n_frames: int,
                     checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``samples [640 N]`` at 16 kHz -> (``[N, 16, vocab]`` float32, facts for the manifest)."""
    from transformers import Wav2Vec2ForCTC, Wav2Vec2Processor

    name = checkpoint or DEFAULT_CHECKPOINT
    ckpt = load_local_checkpoint(subject, "wav2vec", name, model_cls=Wav2Vec2ForCTC,
                                 preprocessor_cls=Wav2Vec2Processor, model_types=("wav2vec2",))
    check_front_end(subject, "wav2vec", name, ckpt.config)
    device = resolve_device("auto")  # CUDA when present: same features up to float rounding
    ckpt.model.to(device)
    n_steps = STEPS_PER_FRAME * n_frames
    values = model_input(subject, ckpt.preprocessor, samples, n_steps)
    logits = encode_steps(lambda x: ckpt.model(x).logits, values, n_steps, device=device,
                          desc="wav2vec2")  # [2N, vocab]
    vocab = ckpt.preprocessor.tokenizer.convert_ids_to_tokens(list(range(logits.shape[1])))
    facts = {
        "checkpoint": name,
        "checkpoint_source": ckpt.source,
        "device": str(device),
        "model": {"type": ckpt.config.model_type, "vocab_size": ckpt.config.vocab_size,
                  "layers": ckpt.config.num_hidden_layers, "output": "CTC logits",
                  "labels": vocab},
        "window": {"steps": WINDOW_STEPS, "step_hz": 50,
                   "layout": "frame i = steps 2i-8..2i+7 (zeros outside); "
                             "step k covers samples [320k, 320k+400)",
                   **chunk_layout()},
    }
    return frame_windows(logits, n_frames, first=FIRST_STEP), facts
