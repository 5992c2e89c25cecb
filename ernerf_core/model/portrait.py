"""The trained portrait (frozen head + torso) as one file, and rendering one full frame.

``torso/model.pt`` holds everything rendering needs, so ``render_test`` and
``render_audio`` read nothing else of the training run (format ``ernerf-portrait/1``, a plain
dict loadable with ``weights_only=True``):

- ``head``: the head model file's dict as written by :func:`ernerf_core.model.io.save_head`
- ``torso``: ``config`` (:meth:`TorsoConfig.as_dict`) and ``state_dict`` (EMA weights,
  alpha grid included)
- ``background``: uint8 [H, W, 3] ``bc.jpg`` at the full resolution
- ``track``: ``poses`` [N, 4, 4] float32 (renderer convention) and ``eye`` [N] float32 of
  the training frames, in order (the driving-audio pose track)
- ``audio``: the training features' ``backend``, ``checkpoint`` and ``feature_shape``
  (what :func:`ernerf_core.audio.check_compatible` compares driving audio against)
- ``meta``: ``H``, ``W``, ``intrinsics`` (fx, fy, cx, cy) at full resolution, ``train``
  (steps, settings, metrics)

Frame composite (ERNERF_FACTS.md section 3): the torso is laid over the background, then
the head is rendered over that: ``image = head + (1 - head_weight_sum) * (torso over bg)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..fsio import atomic_file
from .head import HeadConfig, HeadNetwork
from .io import FORMAT as HEAD_FORMAT
from .io import load_weights_only
from .renderer import render_image
from .torso import TorsoConfig, TorsoNet, pixel_coords

FORMAT = "ernerf-portrait/1"


@dataclass
class Portrait:
    head: HeadNetwork
    torso: TorsoNet
    background: np.ndarray  # uint8 [H, W, 3]
    poses: torch.Tensor  # [N, 4, 4] training track
    eye: torch.Tensor  # [N]
    audio: dict
    meta: dict
    head_payload: dict = field(repr=False, default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.meta["H"]), int(self.meta["W"])

    @property
    def train_downscale(self) -> float:
        """The factor the head was trained at (1 = full size): renders default to that size."""
        head = (self.meta.get("train") or {}).get("head") or {}
        return float((head.get("settings") or {}).get("downscale") or 1.0)

    @property
    def intrinsics(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.meta["intrinsics"])

    @property
    def device(self) -> torch.device:
        return self.head.aabb.device


def save_portrait(path, *, head_payload: dict, torso: TorsoNet, background: np.ndarray, poses: torch.Tensor,
                  eye: torch.Tensor, audio: dict, meta: dict) -> None:
    """Write model.pt atomically (apply the torso's EMA weights before calling)."""
    if head_payload.get("format") != HEAD_FORMAT:
        raise ValueError(f"head payload is not {HEAD_FORMAT}")
    payload = {
        "format": FORMAT,
        "head": head_payload,
        "torso": {"config": torso.config.as_dict(),
                  "state_dict": {k: v.detach().cpu() for k, v in torso.state_dict().items()}},
        "background": torch.from_numpy(np.ascontiguousarray(background, dtype=np.uint8)),
        "track": {"poses": poses.detach().cpu().float(), "eye": eye.detach().cpu().float()},
        "audio": audio,
        "meta": meta,
    }
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_portrait(path, device: torch.device | str = "cpu") -> Portrait:
    """Rebuild head and torso (eval mode, on ``device``) from a portrait model.pt."""
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ER-NeRF portrait model ({FORMAT})")
    hp = payload["head"]
    head = HeadNetwork(HeadConfig.from_dict(hp["config"]))
    head.load_state_dict(hp["state_dict"])
    head.meta = hp["meta"]
    torso = TorsoNet(TorsoConfig.from_dict(payload["torso"]["config"]))
    torso.load_state_dict(payload["torso"]["state_dict"])
    track = payload["track"]
    return Portrait(head=head.to(device).eval(), torso=torso.to(device).eval(),
                    background=payload["background"].numpy(), poses=track["poses"], eye=track["eye"],
                    audio=payload["audio"], meta=payload["meta"], head_payload=hp)


@torch.no_grad()
def torso_over_background(torso: TorsoNet, pose: torch.Tensor, background: torch.Tensor,
                          chunk: int = 1 << 16, use_grid: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """background [H, W, 3] float -> (torso composited over it [H, W, 3], torso alpha [H, W])."""
    H, W = background.shape[:2]
    dev = background.device
    coords = pixel_coords(H, W, dev)
    bg = background.reshape(-1, 3)
    rgb, alpha = torch.empty_like(bg), torch.empty(H * W, device=dev)
    for start in range(0, H * W, chunk):
        sl = slice(start, min(start + chunk, H * W))
        out = torso.composite(coords[sl], pose, bg[sl], index=None, use_grid=use_grid)
        rgb[sl], alpha[sl] = out["rgb"], out["alpha"][:, 0]
    return rgb.view(H, W, 3), alpha.view(H, W)


@torch.no_grad()
def render_frame(portrait: Portrait, pose: torch.Tensor, audio_window: torch.Tensor, eye: float,
                 *, size: tuple[int, int] | None = None, chunk: int = 1 << 15,
                 background: np.ndarray | None = None, use_alpha_grid: bool = True) -> dict[str, torch.Tensor]:
    """One full frame: head over torso over background.

    pose [4, 4] renderer convention; audio_window [8, C, W]; eye in [0, 1]. ``size`` (H, W)
    renders at another resolution (intrinsics scaled); ``background`` uint8 overrides the
    stored one (same size as the render); ``use_alpha_grid=False`` evaluates the torso at
    every pixel (a baseline for benchmarks). Returns ``image`` [H, W, 3] float in [0, 1],
    ``torso`` [H, W, 3] (the torso over the background, before the head), ``torso_alpha``
    [H, W] and ``head_weight`` [H, W].
    """
    H0, W0 = portrait.size
    H, W = size or (H0, W0)
    fx, fy, cx, cy = portrait.intrinsics
    sx, sy = W / W0, H / H0
    intrinsics = (fx * sx, fy * sy, cx * sx, cy * sy)
    dev = portrait.device
    bg = background if background is not None else portrait.background
    if bg.shape[:2] != (H, W):
        import cv2

        bg = cv2.resize(bg, (W, H), interpolation=cv2.INTER_AREA)
    bg_t = torch.from_numpy(np.ascontiguousarray(bg)).to(dev).float() / 255.0
    pose = torch.as_tensor(pose, dtype=torch.float32, device=dev)
    torso_bg, alpha = torso_over_background(portrait.torso, pose, bg_t, chunk=max(chunk, 1 << 16),
                                            use_grid=use_alpha_grid)
    out = render_image(portrait.head, pose, intrinsics, H, W, audio_window.to(dev), float(eye), torso_bg,
                       chunk=chunk)
    return {"image": out["image"], "torso": torso_bg, "torso_alpha": alpha, "head_weight": out["weights_sum"]}


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """[H, W, 3] float in [0, 1] -> uint8 numpy."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
