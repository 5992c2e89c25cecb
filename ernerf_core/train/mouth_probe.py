"""The mouth read-out of the audio code: targets from the subject's landmarks and its loss term.

Why: on real clips the head renders an average mouth. Even on its own training frames a
1,200-step head's mouth opening does not follow the truth (r 0.04 over 150 frames of the
71 s anchor, spread 0.19 of the truth's), though a plain ridge regression from the same
log-mel windows predicts it at r 0.4-0.5: the audio path gets almost no gradient from the
few mouth pixels of a frame, one frame a step. ``train.head.lambda_mouth`` adds a direct
one: a linear read-out (``HeadNetwork.mouth_probe``) of the audio code of a batch of
training frames to each frame's mouth opening and width, from the 68 landmarks the
workflow already has. Rendering never uses the read-out; it shapes what the audio code
carries.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# 68-point indices: inner lip middles, mouth corners, outer eye corners
INNER_TOP, INNER_BOTTOM = 62, 66
CORNER_LEFT, CORNER_RIGHT = 48, 54
EYE_LEFT, EYE_RIGHT = 36, 45
BATCH_FRAMES = 32  # training frames whose audio codes each step reads out


def mouth_shape(landmarks: np.ndarray) -> np.ndarray:
    """[N, 68, 2] landmarks -> [N, 2]: lip gap and mouth width over the eye distance."""
    lm = np.asarray(landmarks, dtype=np.float64)
    eyes = np.linalg.norm(lm[:, EYE_RIGHT] - lm[:, EYE_LEFT], axis=-1).clip(1e-6)
    gap = np.linalg.norm(lm[:, INNER_BOTTOM] - lm[:, INNER_TOP], axis=-1)
    width = np.linalg.norm(lm[:, CORNER_RIGHT] - lm[:, CORNER_LEFT], axis=-1)
    return np.stack([gap / eyes, width / eyes], axis=-1)


def mouth_targets(landmarks: np.ndarray) -> torch.Tensor:
    """[N, 2] float32: :func:`mouth_shape` standardised over the frames (a constant column: 0)."""
    shape = mouth_shape(landmarks)
    std = shape.std(0)
    z = (shape - shape.mean(0)) / np.where(std > 1e-9, std, 1.0)
    return torch.from_numpy(z.astype(np.float32))


def mouth_probe_loss(model, data, targets: torch.Tensor, frame: int, generator: torch.Generator,
                     device: torch.device) -> torch.Tensor:
    """MSE of the read-out of ``frame``'s and ``BATCH_FRAMES - 1`` random training frames'
    audio codes against their standardised mouth shape."""
    n = len(data)
    others = torch.randint(0, n, (min(BATCH_FRAMES, n) - 1,), generator=generator)
    frames = torch.cat([torch.tensor([frame]), others])
    windows = torch.stack([data.audio_window(int(j)) for j in frames]).to(device)  # [B, 8, C, W]
    pred = model.mouth_probe(model.encode_audio(windows))  # [B, 2]
    return F.mse_loss(pred, targets[frames].to(device))
