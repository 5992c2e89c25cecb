"""Stage ``train_torso``: the torso network on the training frames.

``train_torso(subject, data_dir, model_path, manifest_path, settings, device)`` trains
:class:`~ernerf_core.model.torso.TorsoNet` and writes the torso's ``model.pt``
(:func:`~ernerf_core.model.torso.save_torso`) and the manifest with the final validation
metrics. It needs no head: the loss compares the torso over ``bc.jpg`` with the frame's
torso image (the frame with the head removed, ``torso_imgs``) over ``bc.jpg``, the
reference's ``bg_torso_color`` target, so the head never enters it and the workflow trains
the torso beside the head. The ``portrait`` stage (:mod:`ernerf_core.train.portrait`) joins
the two and measures whole frames.

A step (ERNERF_FACTS.md sections 3-5): ``num_rays`` pixels of one random training frame
(uniform, or a ``torso_ray_share`` of them on the frame's torso); the configured
photometric loss, plus the anchor regulariser and 1e-4 x the binary
entropy of the torso alpha. Every ``alpha_grid_every`` steps the 2D alpha grid is
refreshed with a random training pose. Same trainer machinery as the head (AdamW,
exponential lr decay, EMA, checkpoints in ``<model dir>/checkpoints``, resume after a kill,
CSV log, validation images).

``settings`` is Snakemake's ``train_settings("torso")``: shared ``seed``/``loss``/
``huber_delta`` and the ``train.torso`` section; ``preset`` (:mod:`ernerf_core.train.schedule`)
fills the schedule keys the section leaves null, the other missing keys take
:data:`TORSO_DEFAULTS` (no ``preset``: those alone, the ``preview`` schedule).
The head's ``model`` section is not the torso's (its grid is ``train.torso.grid``): a
``model`` key passed in is dropped, so it reaches neither the checkpoints nor the manifest.
The torso reads poses, the torso images and ``bc.jpg`` only (no audio, blink or
landmarks), so those stages' results do not make it stale.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import StageError
from ..fsio import write_manifest
from ..model.encoders import HashGridSpec
from ..model.portrait import to_uint8, torso_over_background
from ..model.torso import TorsoConfig, TorsoNet, coords_of_indices, save_torso
from .dataset import SubjectDataset
from .losses import LOSSES, photometric, psnr, weights_entropy
from .sampling import uniform_pixels
from .schedule import stage_settings
from .trainer import SHARED_DEFAULTS, Trainer, stage_precision

log = logging.getLogger(__name__)

STAGE = "train_torso"
TORSO_DEFAULTS = {
    "iters": 600, "num_rays": 4096, "lr": 1e-2, "lr_net": 1e-3, "lr_decay": 0.5, "ema_decay": 0.95,
    "downscale": 2.0, "torso_ray_share": 0.0, "alpha_grid_every": 16, "val_every": 0, "val_frames": 2,
    "final_val_frames": 8,
    "checkpoint_every": 250, "cache_mb": 1024,
    "grid": {"levels": 16, "features_per_level": 2, "log2_table_size": 16, "base_resolution": 16,
             "finest_resolution": 2048},
}

# Settings that do not change the weights: changing them keeps the checkpoints usable.
NOT_TRAJECTORY = ("cache_mb", "val_every", "val_frames", "final_val_frames", "checkpoint_every")


def resolve_settings(settings: dict) -> dict:
    """Stage settings with defaults filled in (the Snakemake schema fills the same ones)."""
    out = {**SHARED_DEFAULTS, **TORSO_DEFAULTS}
    out.update({k: v for k, v in settings.items() if v is not None and k != "model"})
    out["grid"] = {**TORSO_DEFAULTS["grid"], **(settings.get("grid") or {})}
    return out


# What the torso reads of a split: poses, frames and bc.jpg (no audio, blink or landmarks).
TORSO_PARTS = {"audio": False, "face": False}


def checkpoint_settings(s: dict, train: SubjectDataset) -> dict:
    """What defines the optimisation: a checkpoint made with other values or data is not resumed."""
    return {**{k: v for k, v in s.items() if k not in NOT_TRAJECTORY}, "stage": STAGE,
            "data": train.fingerprint(frames=("torso_imgs",))}


def torso_config(s: dict, n_train: int) -> TorsoConfig:
    return TorsoConfig(grid=HashGridSpec(**s["grid"]), individual_num=n_train)


class TorsoStep:
    """One optimisation step of the torso (see the module docstring)."""

    def __init__(self, torso: TorsoNet, data: SubjectDataset, s: dict, *, generator: torch.Generator,
                 device: torch.device):
        self.torso, self.data, self.s, self.gen, self.device = torso, data, s, generator, device
        self.bc = torch.from_numpy(data.bc).to(device).view(-1, 3).float() / 255  # [H*W, 3]

    def _randint(self, n: int) -> int:
        return int(torch.randint(0, n, (1,), generator=self.gen))

    @torch.no_grad()
    def update_alpha_grid(self) -> None:
        i = self._randint(len(self.data))  # a random training pose and code, as the reference
        self.torso.update_alpha_grid(self.data.poses[i].to(self.device), i, generator=self.gen)

    def _pixels(self, i: int) -> torch.Tensor:
        """``num_rays`` pixels of frame i: a ``torso_ray_share`` of them uniform over the frame's torso
        (its torso image's alpha), the rest uniform over the frame. The torso is a fraction of
        the frame and the background around it is given (``bc.jpg``): uniform rays spend most
        of a step confirming alpha 0 there."""
        n, share = int(self.s["num_rays"]), float(self.s["torso_ray_share"])
        n_torso = int(round(share * n))
        if n_torso > 0:
            torso = torch.from_numpy(np.flatnonzero(self.data.torso_rgba(i)[..., 3] > 0))
            if torso.numel() > 0:
                pick = torch.randint(0, torso.numel(), (n_torso,), generator=self.gen)
                rest = uniform_pixels(n - n_torso, self.data.H, self.data.W, self.gen)
                return torch.cat([torso[pick], rest])
        return uniform_pixels(n, self.data.H, self.data.W, self.gen)

    def __call__(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s, data, dev = self.s, self.data, self.device
        if step % s["alpha_grid_every"] == 0:
            self.update_alpha_grid()
        i = self._randint(len(data))
        pixels = self._pixels(i)  # [R]
        coords = coords_of_indices(pixels, data.H, data.W).to(dev)
        target = torch.from_numpy(data.background(i)).view(-1, 3)[pixels].to(dev).float() / 255
        out = self.torso.composite(coords, data.poses[i].to(dev), self.bc[pixels.to(dev)], index=i)
        per_ray = photometric(out["rgb"], target, s["loss"], s["huber_delta"]).mean(-1)  # [R]
        alpha = out["alpha"][:, 0]
        loss = per_ray.mean() + self.torso.anchor_regulariser() + 1e-4 * weights_entropy(alpha)
        logs = {"mse": float(((out["rgb"].detach() - target) ** 2).mean()),
                "torso_share": float((alpha.detach() > 0.5).float().mean())}
        return loss, logs


@torch.no_grad()
def validate(torso: TorsoNet, data: SubjectDataset, frames: list[int], out_png: Path | None = None) -> dict:
    """The torso over ``bc.jpg`` against the torso image over ``bc.jpg`` on val frames, at the
    dataset's size: ``torso_psnr`` (dB) and ``render_fps`` (torso frames per second)."""
    dev = next(torso.parameters()).device
    bc = torch.from_numpy(data.bc).to(dev).float() / 255
    mses, tiles = [], []
    t0 = time.perf_counter()
    for i in frames:
        pred, _ = torso_over_background(torso, data.poses[i].to(dev), bc)
        real = data.background(i)  # decoded and composited once per frame
        mses.append(float(((pred.cpu() - torch.from_numpy(real).float() / 255) ** 2).mean()))
        tiles.append(np.concatenate([to_uint8(pred), real], axis=1))
    seconds = time.perf_counter() - t0
    if out_png is not None and tiles:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out_png), cv2.cvtColor(np.concatenate(tiles[:4], axis=0), cv2.COLOR_RGB2BGR))
    return {"torso_psnr": float(np.mean([psnr(m) for m in mses])), "render_fps": len(frames) / max(seconds, 1e-9)}


def spread(n_total: int, n: int) -> list[int]:
    """``n`` evenly spaced indices of ``n_total`` (all when n <= 0 or n >= n_total)."""
    if n <= 0 or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def _check(s: dict, subject: str) -> None:
    if s["loss"] not in LOSSES:
        raise StageError(subject, STAGE, f"train.loss {s['loss']!r} is not one of {', '.join(LOSSES)}",
                         "fix train.loss in the config")
    for key in ("iters", "num_rays", "alpha_grid_every"):
        if int(s[key]) < 1:
            raise StageError(subject, STAGE, f"train.torso.{key} is {s[key]}", f"set train.torso.{key} >= 1")


def train_torso(*, subject: str, data_dir, model_path, manifest_path, settings: dict | None = None,
                device: str = "auto") -> dict:
    """Train the torso on ``data_dir``; writes the torso ``model_path`` and the manifest."""
    dev = resolve_device(device)
    settings = stage_settings(settings or {}, STAGE, subject=subject, data_dir=data_dir, device_type=dev.type)
    s = resolve_settings(settings)
    _check(s, subject)
    data_dir, model_path = Path(data_dir), Path(model_path)
    work = model_path.parent
    torch.manual_seed(int(s["seed"]))
    gen = torch.Generator().manual_seed(int(s["seed"]))
    torso_parts = {"subject": subject, "stage": STAGE, **TORSO_PARTS}
    train = SubjectDataset(data_dir, "train", downscale=s["downscale"], cache_mb=s["cache_mb"], **torso_parts)
    val = SubjectDataset(data_dir, "val", downscale=s["downscale"], cache_mb=64, **torso_parts)
    torso = TorsoNet(torso_config(s, len(train))).to(dev)
    step = TorsoStep(torso, train, s, generator=gen, device=dev)
    decay, iters = float(s["lr_decay"]), int(s["iters"])
    run_settings = checkpoint_settings(s, train)
    trainer = Trainer(model=torso, param_groups=torso.param_groups(s["lr"], s["lr_net"]), step_fn=step,
                      iters=iters, lr_lambda=lambda it: decay ** (it / iters), settings=run_settings,
                      checkpoint_dir=work / "checkpoints", log_path=work / "train_log.csv",
                      ema_decay=s["ema_decay"], generator=gen, checkpoint_every=s["checkpoint_every"],
                      desc=STAGE, log_columns=("loss", "psnr", "mse", "torso_share", "val_torso_psnr",
                                               "val_render_fps"),
                      precision=stage_precision(s, subject, STAGE, dev.type))
    if trainer.resume():
        log.info("resumed %s at step %d of %d", STAGE, trainer.step, iters)
    val_frames = spread(len(val), s["val_frames"])

    def periodic_val(it: int) -> dict[str, float]:
        torso.eval()
        try:
            return validate(torso, val, val_frames, out_png=work / "validation" / f"step_{it:07d}.png")
        finally:
            torso.train()

    t0 = time.perf_counter()
    trainer.fit(val_fn=periodic_val if s["val_every"] else None, val_every=s["val_every"])
    wall = time.perf_counter() - t0

    full_val = SubjectDataset(data_dir, "val", downscale=1.0, cache_mb=256, **torso_parts)
    final_frames = spread(len(full_val), s["final_val_frames"])
    with trainer.ema.applied():
        torso.eval()
        final = validate(torso, full_val, final_frames, out_png=work / "validation" / "final.png")
        save_torso(model_path, torso, {"H": train.full_size[0], "W": train.full_size[1], "n_train": len(train),
                                       "data": run_settings["data"],
                                       "train": {"stage": STAGE, "steps": trainer.step, "settings": s,
                                                 "metrics": final}})
    log.info("%s done: %d steps, val torso PSNR %.2f dB", STAGE, trainer.step, final["torso_psnr"])
    write_manifest(manifest_path, stage=STAGE, subject=subject, params=s, model=str(model_path),
                   steps=trainer.step, val=final, val_frames=len(final_frames),
                   train_seconds=round(trainer.elapsed, 1), wall_seconds=round(wall, 1),
                   alpha_grid_share=float((torso.alpha_grid > torso.alpha_threshold()).float().mean()),
                   last_train=trainer.last_logs)
    return final
