"""`hubert` backend: HuBERT last hidden states, two per frame, ``[N, 2, hidden]`` (1024 for large).

As the reference (GeneFace's HuBERT extractor, used by ER-NeRF): transformers
``HubertModel`` from ``facebook/hubert-large-ls960-ft``, input normalised by the
checkpoint's feature extractor, ``last_hidden_state`` at 50 Hz, reshaped so frame ``i``
holds steps ``2i`` and ``2i+1`` (centred at ``40 i + 12.5`` and ``40 i + 32.5`` ms, both
inside the frame). The reference keeps ``(T - 80) // 320`` steps, which for audio of
exactly N frames is ``2N - 1``, then drops the odd one and ends up with ``N - 1`` frames;
here 80 zero samples (the normalised mean) are appended so there are exactly ``2N``
steps and one row per frame. Rows ``0 .. N-2`` correspond one to one with the reference's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..device import resolve_device
from .checkpoints import load_local_checkpoint
from .encoder import check_front_end, chunk_layout, encode_steps, model_input
from .windows import STEPS_PER_FRAME

DEFAULT_CHECKPOINT = "facebook/hubert-large-ls960-ft"


def hubert_features(subject: str, samples: np.ndarray, n_frames: int,
                    checkpoint: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """``samples [640 N]`` at 16 kHz -> (``[N, 2, hidden]`` float32, facts for the manifest)."""
    from transformers import HubertModel, Wav2Vec2FeatureExtractor

    name = checkpoint or DEFAULT_CHECKPOINT
    ckpt = load_local_checkpoint(subject, "hubert", name, model_cls=HubertModel,
                                 preprocessor_cls=Wav2Vec2FeatureExtractor, model_types=("hubert",))
    check_front_end(subject, "hubert", name, ckpt.config)
    device = resolve_device("auto")  # CUDA when present: same features up to float rounding
    ckpt.model.to(device)
    n_steps = STEPS_PER_FRAME * n_frames
    values = model_input(subject, ckpt.preprocessor, samples, n_steps)
    states = encode_steps(lambda x: ckpt.model(x).last_hidden_state, values, n_steps,
                          device=device, desc="HuBERT")  # [2N, hidden]
    hidden = states.shape[1]
    facts = {
        "checkpoint": name,
        "checkpoint_source": ckpt.source,
        "device": str(device),
        "model": {"type": ckpt.config.model_type, "hidden_size": ckpt.config.hidden_size,
                  "layers": ckpt.config.num_hidden_layers, "output": "last_hidden_state"},
        "window": {"steps": STEPS_PER_FRAME, "step_hz": 50,
                   "layout": "frame i = steps 2i, 2i+1; step k covers samples [320k, 320k+400)",
                   **chunk_layout()},
    }
    return states.reshape(n_frames, STEPS_PER_FRAME, hidden), facts
