"""Stage ``train_head``: the ER-NeRF head on a subject folder (and the run both head stages share).

``train_head(subject, data_dir, model_path, manifest_path, settings, device)`` trains the
head from scratch (resuming from ``<model dir>/checkpoints`` after a kill) and writes
``model.pt`` (EMA weights, see :mod:`ernerf_core.model.io`) and the manifest with the final
validation metrics. :class:`HeadRun` is also the body of ``finetune_lips``
(:mod:`ernerf_core.train.lips`). ``settings`` is Snakemake's
``train_settings(stage)``: shared ``seed``/``loss``/``huber_delta``, the ``model`` section,
and the stage's own section; ``preset`` (:mod:`ernerf_core.train.schedule`) fills the schedule
keys the section leaves null, and the other missing keys take :data:`HEAD_DEFAULTS` /
:data:`LIPS_DEFAULTS` (no ``preset``: those defaults alone, the ``preview`` schedule).

Besides model.pt: ``checkpoints/`` (resume), ``train_log.csv`` (loss, PSNR, lr, validation)
and ``validation/step_<n>.png`` (rendered | real) in the model's folder.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..device import job_threads, resolve_device
from ..errors import StageError
from ..fsio import write_manifest
from ..model.head import HeadNetwork, build_head
from ..model.io import load_head, read_head_file, save_head
from ..model.rays import pixel_rays
from ..model.renderer import render_image, render_rays
from .dataset import SubjectDataset
from .error_map import ErrorMap
from .losses import LOSSES, photometric, psnr, uncertainty_weighted, weights_entropy
from .mouth_probe import mouth_probe_loss, mouth_targets
from .sampling import PixelSampler, rect_pixels
from .schedule import stage_settings
from .trainer import SHARED_DEFAULTS, Trainer, stage_precision

log = logging.getLogger(__name__)

HEAD_DEFAULTS = {
    "iters": 1200, "num_rays": 4096, "patch_size": 1, "lips_share": 0.25, "lambda_mouth": 0.01, "lr": 2e-2,
    "lr_net": 1e-3, "lr_audio_scale": 1.0, "lr_decay": 0.5,
    "ema_decay": 0.95, "downscale": 2.0, "error_map": True, "error_map_cells": 64, "error_map_uniform": 0.25,
    "occupancy_update_every": 16, "occupancy_update_fraction": 0.25, "carve": True, "unc_loss": True,
    "lambda_amb": 1e-4, "lambda_entropy": 1e-4, "val_every": 600, "val_frames": 2, "final_val_frames": 4,
    "checkpoint_every": 200, "cache_mb": 2048,
}
LIPS_DEFAULTS = {
    "iters": 200, "num_rays": 4096, "patch_size": 32, "lr": 1e-2, "lr_net": 1e-3, "lr_decay": 0.05,
    "ema_decay": 0.95, "downscale": 2.0, "error_map": True, "error_map_cells": 64, "error_map_uniform": 0.25,
    "occupancy_update_every": 16, "occupancy_update_fraction": 0.25, "lambda_amb": 1e-4, "lambda_entropy": 1e-4,
    "perceptual": "none", "lpips_patch_weight": 0.1, "lpips_rect_weight": 0.01,
    "val_every": 0, "val_frames": 2, "final_val_frames": 4, "checkpoint_every": 100, "cache_mb": 2048,
}
REG_EVERY = 16  # smoothness regulariser interval (reference)
LPIPS_MIN_PX = 32
CPU_THREADS = 1  # torch intra-op threads for CPU training (see HeadRun)
# settings that do not change the trained weights (validation consumes no randomness):
# changing them resumes from the checkpoints instead of starting again
NOT_IN_RESULT = {"val_every", "val_frames", "final_val_frames", "checkpoint_every", "cache_mb"}
EYE_JITTER = 0.05


def resolve_settings(settings: dict, defaults: dict) -> dict:
    """Stage settings with defaults filled in (the Snakemake schema fills the same ones)."""
    out = {**SHARED_DEFAULTS, **defaults, "model": {}}
    out.update({k: v for k, v in settings.items() if v is not None})
    return out


def _check_settings(s: dict, subject: str, stage: str) -> None:
    if s["loss"] not in LOSSES:
        raise StageError(subject, stage, f"train.loss {s['loss']!r} is not one of {', '.join(LOSSES)}",
                         "fix train.loss in the config")
    if s["patch_size"] > 1 and s["num_rays"] < s["patch_size"] ** 2:
        raise StageError(subject, stage, f"num_rays {s['num_rays']} is smaller than one {s['patch_size']}^2 patch",
                         "raise num_rays or lower patch_size")


class HeadStep:
    """One optimisation step of the head (``mode="head"``) or of lip fine-tuning (``"lips"``).

    Head: ``num_rays`` rays (or patches) from one random training frame, drawn from the
    error map when enabled; photometric loss (uncertainty-weighted), weights entropy,
    ambient regularisers, and every 16 steps the position-perturbation smoothness term.
    Lips: odd steps render the whole lips rectangle, even steps patches; no uncertainty
    or smoothness terms (as the reference); LPIPS when ``lpips_fn`` is given.
    The occupancy grid is refreshed every ``occupancy_update_every`` steps.
    """

    def __init__(self, model: HeadNetwork, data: SubjectDataset, s: dict, *, generator: torch.Generator,
                 device: torch.device, error_map: ErrorMap | None, mode: str = "head", lpips_fn=None,
                 step_offset: int = 0, total_steps: int | None = None):
        self.model, self.data, self.s = model, data, s
        self.gen, self.device, self.error_map = generator, device, error_map
        self.mode, self.lpips_fn = mode, lpips_fn
        self.step_offset = step_offset
        self.total = total_steps or s["iters"]
        self.sampler = PixelSampler(data.H, data.W, s["num_rays"], s["patch_size"], error_map)
        # the mouth read-out term needs a head built with its read-out (HeadRun builds one
        # whenever lambda_mouth > 0); a head without it trains photometrically, as the reference
        use_probe = mode == "head" and model.config.mouth_probe
        self.lambda_mouth = float(s.get("lambda_mouth", 0.0)) if use_probe else 0.0
        self.mouth = mouth_targets(data.landmarks) if self.lambda_mouth > 0 else None

    def _randint(self, n: int) -> int:
        return int(torch.randint(0, n, (1,), generator=self.gen))

    @torch.no_grad()
    def update_occupancy(self) -> None:
        i = self._randint(len(self.data))  # a random training audio and eye, as the reference
        enc_a = self.model.encode_audio(self.data.audio_window(i).to(self.device))
        eye = self.data.eye[i].view(1, 1).to(self.device)
        self.model.occupancy.update(lambda x: self.model.density(x, enc_a, eye),
                                    fraction=self.s["occupancy_update_fraction"], generator=self.gen)

    def __call__(self, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        s, data, dev = self.s, self.data, self.device
        if step % s["occupancy_update_every"] == 0:
            self.update_occupancy()
        progress = min((self.step_offset + step) / max(self.total, 1), 1.0)
        i = self._randint(len(data))
        rect_step = self.mode == "lips" and step % 2 == 1
        if rect_step:
            rect = data.lips_rect(i)
            pixels = rect_pixels(rect, data.W)
        else:
            pixels = self.sampler.sample(i, self.gen)
            if self.mode == "head" and s["lips_share"] > 0:
                pixels = self._with_lips_rays(i, pixels)
        pose = data.poses[i].to(dev)
        rays_o, rays_d = pixel_rays(pose, data.intrinsics, pixels, data.W)
        gt = torch.from_numpy(data.image(i)).view(-1, 3)[pixels].to(dev).float() / 255
        bg = torch.from_numpy(data.background(i)).view(-1, 3)[pixels].to(dev).float() / 255
        enc_a = self.model.encode_audio(data.audio_window(i).to(dev))
        eye = (data.eye[i] + (torch.rand(1, generator=self.gen) - 0.5) * 2 * EYE_JITTER).view(1, 1).to(dev)
        code = self.model.individual_code(i)
        out = render_rays(self.model, rays_o, rays_d, enc_a, code, eye, bg, perturb=True, generator=self.gen)
        pred = out["image"]

        per_ray = photometric(pred, gt, s["loss"], s["huber_delta"]).mean(-1)  # [R]
        r0, r1, c0, c1 = data.face_rect(i)
        rows, cols = pixels // data.W, pixels % data.W
        face = ((rows >= r0) & (rows < r1) & (cols >= c0) & (cols < c1)).to(dev)
        if self.error_map is not None:
            self.error_map.update(i, pixels, per_ray)
        loss_rays = per_ray
        if self.mode == "head" and s.get("unc_loss", True):
            loss_rays = uncertainty_weighted(per_ray, out["uncertainty"], pred, gt, face, progress)
        loss = loss_rays.mean() + s["lambda_entropy"] * weights_entropy(out["weights_sum"])
        lambda_amb = progress * s["lambda_amb"]
        amb_aud = out["ambient_aud"]
        loss = loss + lambda_amb * (amb_aud * (~face).float()).mean()
        amb_eye = out["ambient_eye"] / self.model.config.max_samples
        loss = loss + lambda_amb * (amb_eye * amb_aud.detach() * face.float()).mean()
        if self.mode == "head" and step % REG_EVERY == 0 and out["points"].shape[0] > 0:
            loss = loss + progress * 1e-5 * self._smoothness(out, enc_a, code, eye)
        logs = {"mse": float(((pred.detach() - gt) ** 2).mean()), "rays": float(pixels.numel()),
                "samples": float(out["points"].shape[0])}
        if self.mouth is not None:
            mouth = mouth_probe_loss(self.model, data, self.mouth, i, self.gen, dev)
            loss = loss + self.lambda_mouth * mouth
            logs["mouth_probe"] = float(mouth.detach())
        if self.lpips_fn is not None:
            lp = self._lpips(pred, gt, rect_step, pixels.numel())
            loss = loss + lp
            logs["lpips_loss"] = float(lp.detach())
        return loss, logs

    def _with_lips_rays(self, i: int, pixels: torch.Tensor) -> torch.Tensor:
        """Replace a ``lips_share`` of the pixels with uniform draws in frame i's mouth band: the
        lips rectangle's rows across the face rectangle's width.

        The mouth is about 1% of a frame, so without this the head learns the average mouth
        first and the audio pathway (the only thing that can tell an open mouth from a closed
        one) gets almost no gradient in a short schedule. The band spans the face's width
        because the yz plane's features are shared along x: rays on the mouth alone leave
        horizontal streaks across the cheeks at the mouth's height."""
        n = int(round(self.s["lips_share"] * pixels.numel()))
        r0, r1, lc0, lc1 = self.data.lips_rect(i)
        _, _, fc0, fc1 = self.data.face_rect(i)
        c0, c1 = min(lc0, fc0), max(lc1, fc1)  # the lips rectangle is at least 32 px: on tiny frames, wider
        rows = torch.randint(r0, r1, (n,), generator=self.gen)
        cols = torch.randint(c0, c1, (n,), generator=self.gen)
        return torch.cat([pixels[:pixels.numel() - n], rows * self.data.W + cols])

    def _smoothness(self, out, enc_a, code, eye) -> torch.Tensor:
        """Uncertainty and ambient fields should not change under a 1e-3 position jitter."""
        xyz, dirs = out["points"].detach(), out["dirs"]
        delta = (torch.rand(xyz.shape, generator=self.gen).to(xyz.device) * 2 - 1) * 1e-3
        with torch.no_grad():
            raw = self.model(xyz, dirs, enc_a.detach(), code.detach(), eye)
        reg = self.model(xyz + delta, dirs, enc_a.detach(), code.detach(), eye)
        crit = lambda a, b: photometric(a, b, self.s["loss"], self.s["huber_delta"]).mean()  # noqa: E731
        return sum(crit(raw[k], reg[k]) for k in ("uncertainty", "ambient_aud", "ambient_eye"))

    def _lpips(self, pred, gt, rect_step: bool, n: int) -> torch.Tensor:
        if rect_step:
            side = int(round(math.sqrt(n)))
            shape, weight = (1, side, side), self.s["lpips_rect_weight"]
        elif self.s["patch_size"] > 1:
            P = self.s["patch_size"]
            shape, weight = (n // (P * P), P, P), self.s["lpips_patch_weight"]
        else:
            return pred.new_zeros(())
        pad = max(0, (LPIPS_MIN_PX - shape[1] + 1) // 2)  # AlexNet needs >= 32 px: pad as the reference

        def to_img(x):
            return F.pad(x.view(*shape, 3).permute(0, 3, 1, 2) * 2 - 1, (pad, pad, pad, pad))

        return weight * self.lpips_fn(to_img(pred), to_img(gt)).mean()


def validate(model: HeadNetwork, data: SubjectDataset, frames: list[int], *, loss: str, huber_delta: float,
             out_png: Path | None = None, lmd_detector=None, lpips_fn=None) -> dict[str, float]:
    """Render val frames over their backgrounds; PSNR, loss, LMD (when faces are found), LPIPS."""
    device = model.aabb.device
    mses, losses, renders, reals = [], [], [], []
    t0 = time.perf_counter()
    for i in frames:
        out = render_image(model, data.poses[i], data.intrinsics, data.H, data.W, data.audio_window(i),
                           float(data.eye[i]), data.background(i))
        pred = out["image"].cpu()
        gt = torch.from_numpy(data.image(i)).float() / 255
        mses.append(float(((pred - gt) ** 2).mean()))
        losses.append(float(photometric(pred, gt, loss, huber_delta).mean()))
        renders.append((pred.numpy() * 255).round().astype(np.uint8))
        reals.append(data.image(i))
    fps = len(frames) / max(time.perf_counter() - t0, 1e-9)
    metrics: dict[str, float] = {"psnr": float(np.mean([psnr(m) for m in mses])), "loss": float(np.mean(losses)),
                                 "render_fps": fps}
    if lmd_detector is not None:
        from ..metrics.lmd import lmd

        value, n = lmd(renders, reals, lmd_detector)
        metrics["lmd"] = float("nan") if value is None else value
        metrics["lmd_frames"] = n
    if lpips_fn is not None:
        to_t = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].float().to(device) / 127.5 - 1  # noqa: E731
        metrics["lpips"] = float(np.mean([float(lpips_fn(to_t(r), to_t(g))) for r, g in zip(renders, reals,
                                                                                               strict=True)]))
    if out_png is not None and renders:
        out_png.parent.mkdir(parents=True, exist_ok=True)
        sheet = np.concatenate([np.concatenate([r, g], axis=1) for r, g in zip(renders[:4], reals[:4],
                                                                               strict=False)], axis=0)
        cv2.imwrite(str(out_png), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    return metrics


def init_occupancy(model: HeadNetwork, data: SubjectDataset, carve: bool = True, views: int = 64) -> None:
    """Mark unseen cells unusable (reference) and, with ``carve``, cells that the training
    views show as background (see :meth:`OccupancyGrid.carve`)."""
    dev = model.aabb.device
    usable = model.occupancy.mark_unseen(data.poses.to(dev), data.intrinsics, data.H, data.W)
    if carve:
        idx = _spread(len(data), views)
        masks = torch.from_numpy(np.stack([data.head_mask(i) for i in idx]))
        left = model.occupancy.carve(data.poses[idx].to(dev), data.intrinsics, masks)
        log.info("occupancy: %d cells seen, %d left after carving with %d views", usable, left, len(idx))


def _spread(n_total: int, n: int) -> list[int]:
    if n <= 0 or n >= n_total:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def _lmd_detector():
    try:
        from ..metrics.lmd import MouthLandmarker

        return MouthLandmarker()
    except Exception as err:  # MediaPipe missing or broken: report PSNR only
        log.warning("LMD unavailable (%s)", err)
        return None


def _lpips_for_metrics(device):
    from ..metrics.lpips_net import load_lpips, lpips_available

    if not lpips_available():
        log.info("LPIPS skipped: AlexNet weights are not in the torch cache")
        return None
    return load_lpips(device=device)


class HeadRun:
    """One training run of the head or lips stage: built (and resumed) on construction,
    then ``train()`` and ``finish(model_path, manifest_path)``. Shared body of
    :func:`train_head` and :func:`finetune_lips`; tests drive it to interrupt and resume."""

    def __init__(self, *, stage: str, subject: str, data_dir, work_dir, settings: dict, device: str = "auto",
                 init_head: Path | None = None):
        defaults = LIPS_DEFAULTS if stage == "finetune_lips" else HEAD_DEFAULTS
        dev = self.device = resolve_device(device)
        settings = stage_settings(settings, stage, subject=subject, data_dir=data_dir, device_type=dev.type)
        s = self.s = resolve_settings(settings, defaults)
        _check_settings(s, subject, stage)
        self.stage, self.subject = stage, subject
        if dev.type == "cpu":
            # A step is thousands of small ops: a second intra-op thread gains little when the
            # machine is idle and, when anything else runs, every op waits for a descheduled
            # thread (measured here: 0.23 s/step with 1 thread, 1.0-4.0 s with 2 under load).
            # So one thread, unless the job was given a count (the workflow's
            # resources.<rule>.threads, `ernerf --threads`): then that.
            torch.set_num_threads(job_threads() or CPU_THREADS)
        self.data_dir, self.work = Path(data_dir), Path(work_dir)
        torch.manual_seed(int(s["seed"]))
        gen = torch.Generator().manual_seed(int(s["seed"]))
        train = self.train_set = SubjectDataset(self.data_dir, "train", subject=subject, stage=stage,
                                                downscale=s["downscale"], cache_mb=s["cache_mb"])
        self.val_set = SubjectDataset(self.data_dir, "val", subject=subject, stage=stage,
                                      features_path=train.features_path, downscale=s["downscale"], cache_mb=64)
        self.step_offset, total = 0, s["iters"]
        if init_head is None:
            probe = bool(s["model"].get("mouth_probe") or s["lambda_mouth"] > 0)
            model_cfg = {**s["model"], "mouth_probe": probe}
            model = build_head(model_cfg, train.audio_shape, n_individual=len(train)).to(dev)
            if model.config.audio_normalize or model.config.audio_code_norm:
                model.set_audio_stats(train.features[torch.from_numpy(train.aud_ids)].to(dev))
            init_occupancy(model, train, carve=s["carve"])
        else:
            if not Path(init_head).exists():
                raise StageError(subject, stage, f"{init_head} is missing", "run train_head first")
            try:
                model = load_head(init_head, dev).train()
            except (ValueError, KeyError, RuntimeError) as err:  # not a head file, or a pickle payload
                raise StageError(subject, stage, f"{init_head} is not a head model ({err})",
                                 "rerun train_head to rewrite it") from None
            meta = model.meta
            if meta["audio"]["channels"] != train.audio_shape[1] or meta["data"]["n_train"] != len(train):
                raise StageError(subject, stage, f"{init_head} was trained on different data",
                                 "rerun train_head on this subject")
            self.step_offset = int(meta["train"]["steps"])
            total = self.step_offset + s["iters"]
        self.model = model
        self.error_map = ErrorMap(len(train), train.H, train.W, s["error_map_cells"], s["error_map_uniform"]) \
            if s["error_map"] else None
        self.lpips_fn = None
        if stage == "finetune_lips" and s["perceptual"] == "lpips":
            from ..metrics.lpips_net import load_lpips

            self.lpips_fn = load_lpips(subject, stage, dev)
        self.step_fn = HeadStep(model, train, s, generator=gen, device=dev, error_map=self.error_map,
                                mode="lips" if stage == "finetune_lips" else "head", lpips_fn=self.lpips_fn,
                                step_offset=self.step_offset, total_steps=total)
        decay, offset = float(s["lr_decay"]), self.step_offset
        # what defines the trained weights: checkpoints made with anything else are not resumed
        self.run_settings = {**{k: v for k, v in s.items() if k not in NOT_IN_RESULT}, "stage": stage,
                             "data": train.fingerprint(),
                             "init": read_head_file(init_head)["meta"]["train"].get("id") if init_head else None}
        self.trainer = Trainer(
            model=model, param_groups=model.param_groups(s["lr"], s["lr_net"], s.get("lr_audio_scale", 1.0)),
            step_fn=self.step_fn,
            iters=s["iters"], lr_lambda=lambda it: decay ** ((offset + it) / total), settings=self.run_settings,
            checkpoint_dir=self.work / "checkpoints", log_path=self.work / "train_log.csv",
            ema_decay=s["ema_decay"], generator=gen,
            extra_state={"error_map": self.error_map} if self.error_map else None,
            checkpoint_every=s["checkpoint_every"], desc=stage,
            log_columns=("loss", "psnr", "mse", "rays", "samples", "lpips_loss", "mouth_probe", "val_psnr",
                         "val_loss", "val_lmd", "val_lpips", "val_render_fps"),
            precision=stage_precision(s, subject, stage, dev.type))
        if self.trainer.resume():
            log.info("resumed %s at step %d of %d", stage, self.trainer.step, s["iters"])

    def train(self, on_step_end=None) -> dict[str, float]:
        s = self.s
        frames = _spread(len(self.val_set), s["val_frames"])

        def periodic_val(it: int) -> dict[str, float]:
            return validate(self.model, self.val_set, frames, loss=s["loss"], huber_delta=s["huber_delta"],
                            out_png=self.work / "validation" / f"step_{it:07d}.png")

        return self.trainer.fit(val_fn=periodic_val if s["val_every"] else None, val_every=s["val_every"],
                                on_step_end=on_step_end)

    def finish(self, model_path, manifest_path) -> dict:
        """Final validation at full resolution with the EMA weights; writes model.pt and the manifest."""
        s, train, trainer, model = self.s, self.train_set, self.trainer, self.model
        full_val = SubjectDataset(self.data_dir, "val", subject=self.subject, stage=self.stage,
                                  features_path=train.features_path, downscale=1.0, cache_mb=256)
        frames = _spread(len(full_val), s["final_val_frames"])
        detector = _lmd_detector()
        lpips_metric = self.lpips_fn if self.lpips_fn is not None else _lpips_for_metrics(self.device)
        try:
            with trainer.ema.applied():
                model.eval()
                final = validate(model, full_val, frames, loss=s["loss"], huber_delta=s["huber_delta"],
                                 out_png=self.work / "validation" / "final.png", lmd_detector=detector,
                                 lpips_fn=lpips_metric)
                steps = self.step_offset + trainer.step
                meta = {
                    "audio": {"backend": train.audio_backend, "channels": train.audio_shape[1],
                              "window": train.audio_shape[0]},
                    "scene": {"scale": 4.0, "offset": [0.0, 0.0, 0.0]},
                    "data": {"H": full_val.H, "W": full_val.W, "intrinsics": list(full_val.full_intrinsics),
                             "n_train": len(train)},
                    "train": {"stage": self.stage, "id": f"{self.stage}-{self.run_settings['data']}-{steps}-"
                                                         f"{int(time.time())}",
                              "steps": steps, "settings": s, "metrics": final},
                }
                save_head(model_path, model, meta)
        finally:
            if detector is not None:
                detector.close()
        summary = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in final.items()}
        log.info("%s done: %d steps, val PSNR %.2f dB, LMD %s", self.stage, trainer.step, final["psnr"],
                 summary.get("lmd"))
        write_manifest(manifest_path, stage=self.stage, subject=self.subject, params=s, model=str(model_path),
                       steps=trainer.step, total_steps=self.step_offset + trainer.step, val=summary,
                       val_frames=len(frames), train_seconds=round(trainer.elapsed, 1),
                       occupied_share=model.occupancy.occupied_share(), audio_backend=train.audio_backend,
                       last_train=trainer.last_logs)
        return summary


def run_head_stage(*, stage: str, subject: str, data_dir, model_path, manifest_path, settings: dict | None,
                   device: str, init_head: Path | None = None) -> dict:
    """Build, train and finish one :class:`HeadRun`; the caller keeps its torch threads."""
    threads = torch.get_num_threads()
    try:
        run = HeadRun(stage=stage, subject=subject, data_dir=data_dir, work_dir=Path(model_path).parent,
                      settings=settings or {}, device=device, init_head=init_head)
        run.train()
        return run.finish(model_path, manifest_path)
    finally:
        torch.set_num_threads(threads)  # HeadRun pins one thread on a CPU


def train_head(*, subject: str, data_dir, model_path, manifest_path, settings: dict | None = None,
               device: str = "auto") -> dict:
    """Train the ER-NeRF head on ``data_dir``; writes ``model_path`` and ``manifest_path``."""
    return run_head_stage(stage="train_head", subject=subject, data_dir=data_dir, model_path=model_path,
                          manifest_path=manifest_path, settings=settings, device=device)
