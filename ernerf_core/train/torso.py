"""Stage ``train_torso``: the torso network behind a frozen head.

``train_torso(subject, data_dir, head_path, model_path, manifest_path, settings, device)``
loads the lip-tuned head (``lips/model.pt``, frozen: it is neither optimised nor changed),
trains :class:`~ernerf_core.model.torso.TorsoNet` on the training frames, and writes the
portrait ``model.pt`` (head + torso + background + pose track + audio facts, see
:mod:`ernerf_core.render.portrait`) and the manifest with the final validation metrics.

A step (ERNERF_FACTS.md sections 3-5): ``num_rays`` uniform pixels of one random training
frame; the torso is composited over ``bc.jpg`` and compared with the frame's torso image
over ``bc.jpg`` (the reference's ``bg_torso_color``) with the configured photometric loss,
plus the anchor regulariser and 1e-4 x the binary entropy of the torso alpha. Every
``alpha_grid_every`` steps the 2D alpha grid is refreshed with a random training pose.
Same trainer machinery as the head (AdamW, exponential lr decay, EMA, checkpoints in
``<model dir>/checkpoints``, resume after a kill, CSV log, validation images).

``settings`` is Snakemake's ``train_settings("torso")``: shared ``seed``/``loss``/
``huber_delta``, the ``model`` section (unused here: the head is already built) and the
``train.torso`` section; missing keys take :data:`TORSO_DEFAULTS`.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import StageError
from ..fsio import write_manifest
from ..model.encoders import HashGridSpec
from ..model.io import load_head, read_head_file
from ..model.torso import TorsoConfig, TorsoNet, coords_of_indices
from ..render.portrait import Portrait, render_frame, save_portrait, to_uint8
from .dataset import SubjectDataset, data_fingerprint
from .losses import LOSSES, photometric, psnr, weights_entropy
from .sampling import uniform_pixels
from .trainer import Trainer

log = logging.getLogger(__name__)

STAGE = "train_torso"
SHARED_DEFAULTS = {"seed": 0, "loss": "l2", "huber_delta": 0.1}
TORSO_DEFAULTS = {
    "iters": 1000, "num_rays": 4096, "lr": 1e-2, "lr_net": 1e-3, "lr_decay": 0.5, "ema_decay": 0.95,
    "downscale": 2.0, "alpha_grid_every": 16, "val_every": 0, "val_frames": 2, "final_val_frames": 8,
    "checkpoint_every": 250, "cache_mb": 1024,
    "grid": {"levels": 16, "features_per_level": 2, "log2_table_size": 16, "base_resolution": 16,
             "finest_resolution": 2048},
}

# Settings that do not change the weights: changing them keeps the checkpoints usable.
NOT_TRAJECTORY = ("cache_mb", "val_every", "val_frames", "final_val_frames", "checkpoint_every")


def resolve_settings(settings: dict) -> dict:
    """Stage settings with defaults filled in (the Snakemake schema fills the same ones)."""
    out = {**SHARED_DEFAULTS, **TORSO_DEFAULTS, "model": {}}
    out.update({k: v for k, v in settings.items() if v is not None})
    out["grid"] = {**TORSO_DEFAULTS["grid"], **(settings.get("grid") or {})}
    return out


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

    def __call__(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s, data, dev = self.s, self.data, self.device
        if step % s["alpha_grid_every"] == 0:
            self.update_alpha_grid()
        i = self._randint(len(data))
        pixels = uniform_pixels(s["num_rays"], data.H, data.W, self.gen)  # [R]
        coords = coords_of_indices(pixels, data.H, data.W).to(dev)
        target = torch.from_numpy(data.background(i)).view(-1, 3)[pixels].to(dev).float() / 255
        out = self.torso.composite(coords, data.poses[i].to(dev), self.bc[pixels.to(dev)], index=i)
        per_ray = photometric(out["rgb"], target, s["loss"], s["huber_delta"]).mean(-1)  # [R]
        alpha = out["alpha"][:, 0]
        loss = per_ray.mean() + self.torso.anchor_regulariser() + 1e-4 * weights_entropy(alpha)
        logs = {"mse": float(((out["rgb"].detach() - target) ** 2).mean()),
                "torso_share": float((alpha.detach() > 0.5).float().mean())}
        return loss, logs


def validate(portrait: Portrait, data: SubjectDataset, frames: list[int],
             out_png: Path | None = None) -> dict[str, float]:
    """Full frames (head + torso) of val frames at the dataset's size.

    ``psnr``: the whole frame against gt_imgs; ``torso_psnr``: torso over bc.jpg against the
    torso image over bc.jpg (the torso network alone); ``render_fps``: whole frames per second.
    """
    dev = portrait.device
    mses, torso_mses, tiles = [], [], []
    t0 = time.perf_counter()
    for i in frames:
        pose = data.poses[i].to(dev)
        out = render_frame(portrait, pose, data.audio_window(i), float(data.eye[i]), size=(data.H, data.W),
                           background=data.bc)
        pred = to_uint8(out["image"])
        real = data.image(i)
        mses.append(float(((pred / 255.0 - real / 255.0) ** 2).mean()))
        target = torch.from_numpy(data.background(i)).float() / 255
        torso_mses.append(float(((out["torso"].cpu() - target) ** 2).mean()))
        tiles.append(np.concatenate([pred, real], axis=1))
    seconds = time.perf_counter() - t0
    if out_png is not None and tiles:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out_png), cv2.cvtColor(np.concatenate(tiles[:4], axis=0), cv2.COLOR_RGB2BGR))
    return {"psnr": float(np.mean([psnr(m) for m in mses])),
            "torso_psnr": float(np.mean([psnr(m) for m in torso_mses])),
            "render_fps": len(frames) / max(seconds, 1e-9)}


def spread(n_total: int, n: int) -> list[int]:
    """``n`` evenly spaced indices of ``n_total`` (all when n <= 0 or n >= n_total)."""
    if n <= 0 or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def audio_facts(data_dir: Path, train: SubjectDataset) -> dict:
    """Backend, checkpoint and feature shape of the training audio (for driving-audio checks)."""
    facts = {"backend": train.audio_backend, "checkpoint": None,
             "feature_shape": [int(train.features.shape[0]), *train.audio_shape]}
    manifest = data_dir.parent / "manifests" / "audio_features.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        facts["checkpoint"] = m.get("checkpoint")
        facts["backend"] = m.get("backend", facts["backend"])
    return facts


def _frozen_head(path: Path, device: torch.device):
    """The head from its model.pt, eval mode, gradients off: torso training never changes it."""
    head = load_head(path, device)
    for p in head.parameters():
        p.requires_grad_(False)
    return head


def _check(s: dict, subject: str) -> None:
    if s["loss"] not in LOSSES:
        raise StageError(subject, STAGE, f"train.loss {s['loss']!r} is not one of {', '.join(LOSSES)}",
                         "fix train.loss in the config")
    for key in ("iters", "num_rays", "alpha_grid_every"):
        if int(s[key]) < 1:
            raise StageError(subject, STAGE, f"train.torso.{key} is {s[key]}", f"set train.torso.{key} >= 1")


def train_torso(*, subject: str, data_dir, head_path, model_path, manifest_path, settings: dict | None = None,
                device: str = "auto") -> dict:
    """Train the torso behind the frozen head ``head_path``; writes ``model_path`` and the manifest."""
    s = resolve_settings(settings or {})
    _check(s, subject)
    dev = resolve_device(device)
    data_dir, model_path, head_path = Path(data_dir), Path(model_path), Path(head_path)
    work = model_path.parent
    if not head_path.exists():
        raise StageError(subject, STAGE, f"{head_path} is missing", "run finetune_lips (or train_head) first")
    try:
        head_payload = read_head_file(head_path)
    except (ValueError, RuntimeError, KeyError) as err:
        raise StageError(subject, STAGE, f"{head_path} is not a head model ({err})",
                         "rerun finetune_lips to rewrite it") from None
    torch.manual_seed(int(s["seed"]))
    gen = torch.Generator().manual_seed(int(s["seed"]))
    train = SubjectDataset(data_dir, "train", subject=subject, stage=STAGE, downscale=s["downscale"],
                           cache_mb=s["cache_mb"])
    val = SubjectDataset(data_dir, "val", subject=subject, stage=STAGE, features_path=train.features_path,
                         downscale=s["downscale"], cache_mb=64)
    head_meta = head_payload["meta"]
    if head_meta["audio"]["channels"] != train.audio_shape[1] or head_meta["data"]["n_train"] != len(train):
        raise StageError(subject, STAGE, f"{head_path} was trained on different data "
                         f"({head_meta['data']['n_train']} frames, {head_meta['audio']['channels']} audio "
                         f"channels; this subject has {len(train)} and {train.audio_shape[1]})",
                         "rerun train_head and finetune_lips on this subject")

    torso = TorsoNet(torso_config(s, len(train))).to(dev)
    bc_full = cv2.cvtColor(cv2.imread(str(data_dir / "bc.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if bc_full.shape[:2] != train.full_size:
        bc_full = cv2.resize(bc_full, train.full_size[::-1], interpolation=cv2.INTER_AREA)
    meta = {"H": train.full_size[0], "W": train.full_size[1], "intrinsics": list(train.full_intrinsics)}
    portrait = Portrait(head=_frozen_head(head_path, dev), torso=torso, background=bc_full,
                        poses=train.poses, eye=train.eye, audio=audio_facts(data_dir, train), meta=meta,
                        head_payload=head_payload)

    step = TorsoStep(torso, train, s, generator=gen, device=dev)
    decay, iters = float(s["lr_decay"]), int(s["iters"])
    # what defines the optimisation: a checkpoint made with other values is not resumed
    run_settings = {**{k: v for k, v in s.items() if k not in NOT_TRAJECTORY}, "stage": STAGE,
                    "data": data_fingerprint(data_dir, train.features_path),
                    "head": head_meta["train"].get("id")}
    trainer = Trainer(model=torso, param_groups=torso.param_groups(s["lr"], s["lr_net"]), step_fn=step,
                      iters=iters, lr_lambda=lambda it: decay ** (it / iters), settings=run_settings,
                      checkpoint_dir=work / "checkpoints", log_path=work / "train_log.csv",
                      ema_decay=s["ema_decay"], generator=gen, checkpoint_every=s["checkpoint_every"],
                      desc=STAGE,
                      log_columns=("loss", "psnr", "mse", "torso_share", "val_psnr", "val_torso_psnr",
                                   "val_render_fps"))
    if trainer.resume():
        log.info("resumed %s at step %d of %d", STAGE, trainer.step, iters)
    val_frames = spread(len(val), s["val_frames"])

    def periodic_val(it: int) -> dict[str, float]:
        return validate(portrait, val, val_frames, out_png=work / "validation" / f"step_{it:07d}.png")

    t0 = time.perf_counter()
    trainer.fit(val_fn=periodic_val if s["val_every"] else None, val_every=s["val_every"])
    wall = time.perf_counter() - t0

    full_val = SubjectDataset(data_dir, "val", subject=subject, stage=STAGE,
                              features_path=train.features_path, downscale=1.0, cache_mb=256)
    final_frames = spread(len(full_val), s["final_val_frames"])
    with trainer.ema.applied():
        torso.eval()
        final = validate(portrait, full_val, final_frames, out_png=work / "validation" / "final.png")
        meta["train"] = {"stage": STAGE, "steps": trainer.step, "settings": s, "metrics": final,
                         "head": head_meta["train"]}
        save_portrait(model_path, head_payload=head_payload, torso=torso, background=bc_full,
                      poses=train.poses, eye=train.eye, audio=portrait.audio, meta=meta)
    summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in final.items()}
    log.info("%s done: %d steps, val PSNR %.2f dB (torso %.2f dB)", STAGE, trainer.step, final["psnr"],
             final["torso_psnr"])
    write_manifest(manifest_path, stage=STAGE, subject=subject, params=s, model=str(model_path),
                   head=str(head_path), steps=trainer.step, val=summary, val_frames=len(final_frames),
                   train_seconds=round(trainer.elapsed, 1), wall_seconds=round(wall, 1),
                   alpha_grid_share=float((torso.alpha_grid > torso.alpha_threshold()).float().mean()),
                   last_train=trainer.last_logs)
    return summary
