"""Refuse to drive a model with audio features it was not trained on."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import StageError

log = logging.getLogger("ernerf.audio")


def check_compatible(trained_manifest: dict[str, Any], driving_manifest: dict[str, Any], subject: str,
                     stage: str = "render_audio") -> None:
    """Raise StageError when the driving features differ in backend or shape from the training ones.

    Both arguments are `audio_features` manifests (the subject's and the driving audio's).
    """
    t_backend, d_backend = trained_manifest.get("backend"), driving_manifest.get("backend")
    t_ckpt, d_ckpt = trained_manifest.get("checkpoint"), driving_manifest.get("checkpoint")
    use = f"audio.backend: {t_backend}" + (f" with audio.checkpoint: {t_ckpt}" if t_ckpt else "")
    if t_backend != d_backend:
        raise StageError(subject, stage,
                         f"the model was trained on '{t_backend}' audio features but the driving features "
                         f"are '{d_backend}'",
                         f"set {use} and rerun so the driving audio is featurised the same way "
                         f"(or retrain the model on '{d_backend}' features)")
    # [N, W, C]: N differs with the audio's length, the per-frame shape [W, C] must not.
    t_shape = trained_manifest.get("feature_shape", [])[1:]
    d_shape = driving_manifest.get("feature_shape", [])[1:]
    if t_shape != d_shape:
        raise StageError(subject, stage,
                         f"the model was trained on {t_backend} features of {t_shape} per frame "
                         f"(checkpoint {t_ckpt}) but the driving features are {d_shape} "
                         f"(checkpoint {d_ckpt})",
                         f"set {use} and rerun the driving features")
    if t_ckpt != d_ckpt:
        log.warning("%s: trained on %s features from %s, driving features from %s: same shape, "
                    "but different checkpoints give different features", subject, t_backend, t_ckpt, d_ckpt)
