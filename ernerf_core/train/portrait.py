"""Stage ``portrait``: the lip-tuned head and the torso joined into one portrait file.

``assemble_portrait(subject, data_dir, head_path, torso_path, model_path, manifest_path,
val_frames, device)`` checks that both models were trained on this subject's data, renders
whole frames (head over torso over ``bc.jpg``) of evenly spaced val frames at full size for
the full-frame PSNR, and writes the portrait ``model.pt`` that ``render_test`` and
``render_audio`` read (:mod:`ernerf_core.model.portrait`) and the manifest. Nothing is
trained here; the head and the torso are copied bit for bit.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..errors import StageError
from ..fsio import write_manifest
from ..model.io import load_head, read_head_file
from ..model.portrait import Portrait, render_frame, save_portrait, to_uint8
from ..model.torso import TorsoConfig, TorsoNet, read_torso_file
from .dataset import SubjectDataset
from .losses import psnr
from .torso import spread

STAGE = "portrait"
log = logging.getLogger(__name__)


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


@torch.no_grad()
def validate(portrait: Portrait, data: SubjectDataset, frames: list[int], out_png: Path | None = None) -> dict:
    """Whole frames (head + torso over ``bc.jpg``) of val frames at the dataset's size.

    ``psnr``: the whole frame against gt_imgs; ``torso_psnr``: the torso over bc.jpg against
    the torso image over bc.jpg; ``render_fps``: whole frames per second.
    """
    dev = portrait.device
    mses, torso_mses, tiles = [], [], []
    t0 = time.perf_counter()
    for i in frames:
        out = render_frame(portrait, data.poses[i].to(dev), data.audio_window(i), float(data.eye[i]),
                           size=(data.H, data.W), background=data.bc)
        pred, real = to_uint8(out["image"]), data.image(i)
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


def _read(subject: str, path: Path, reader, what: str, made_by: str) -> dict:
    if not path.exists():
        raise StageError(subject, STAGE, f"{path} is missing", f"run {made_by} first")
    try:
        return reader(path)
    except (ValueError, RuntimeError, KeyError) as err:
        raise StageError(subject, STAGE, f"{path} is not a {what} model ({err})",
                         f"rerun {made_by} to rewrite it") from None


def assemble_portrait(*, subject: str, data_dir, head_path, torso_path, model_path, manifest_path,
                      val_frames: int = 8, device: str = "auto") -> dict:
    """Join ``head_path`` (lip-tuned head) and ``torso_path``; writes the portrait ``model_path``."""
    dev = resolve_device(device)
    data_dir, head_path, torso_path = Path(data_dir), Path(head_path), Path(torso_path)
    head_payload = _read(subject, head_path, read_head_file, "head", "finetune_lips (or train_head)")
    torso_payload = _read(subject, torso_path, read_torso_file, "torso", "train_torso")
    train = SubjectDataset(data_dir, "train", subject=subject, stage=STAGE, cache_mb=0, load_images=False)
    head_meta = head_payload["meta"]
    if head_meta["audio"]["channels"] != train.audio_shape[1] or head_meta["data"]["n_train"] != len(train):
        raise StageError(subject, STAGE, f"{head_path} was trained on different data "
                         f"({head_meta['data']['n_train']} frames, {head_meta['audio']['channels']} audio "
                         f"channels; this subject has {len(train)} and {train.audio_shape[1]})",
                         "rerun train_head and finetune_lips on this subject")
    torso_meta = torso_payload["meta"]
    if torso_meta["n_train"] != len(train) or (torso_meta["H"], torso_meta["W"]) != train.full_size:
        raise StageError(subject, STAGE, f"{torso_path} was trained on different data "
                         f"({torso_meta['n_train']} frames of {torso_meta['H']}x{torso_meta['W']}; this subject "
                         f"has {len(train)} of {train.full_size[0]}x{train.full_size[1]})",
                         "rerun train_torso on this subject")
    torso = TorsoNet(TorsoConfig.from_dict(torso_payload["config"]))
    torso.load_state_dict(torso_payload["state_dict"])
    bc = cv2.cvtColor(cv2.imread(str(data_dir / "bc.jpg"), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    if bc.shape[:2] != train.full_size:
        bc = cv2.resize(bc, train.full_size[::-1], interpolation=cv2.INTER_AREA)
    meta = {"H": train.full_size[0], "W": train.full_size[1], "intrinsics": list(train.full_intrinsics)}
    portrait = Portrait(head=load_head(head_path, dev), torso=torso.to(dev).eval(), background=bc,
                        poses=train.poses, eye=train.eye, audio=audio_facts(data_dir, train), meta=meta,
                        head_payload=head_payload)
    val = SubjectDataset(data_dir, "val", subject=subject, stage=STAGE, features_path=train.features_path,
                         downscale=1.0, cache_mb=256)
    frames = spread(len(val), val_frames)
    final = validate(portrait, val, frames, out_png=Path(model_path).parent / "validation.png")
    meta["train"] = {"stage": STAGE, "metrics": final, "head": head_meta["train"], "torso": torso_meta["train"]}
    save_portrait(model_path, head_payload=head_payload, torso=portrait.torso, background=bc, poses=train.poses,
                  eye=train.eye, audio=portrait.audio, meta=meta)
    log.info("%s: val PSNR %.2f dB whole frame (torso %.2f dB) over %d frames", STAGE, final["psnr"],
             final["torso_psnr"], len(frames))
    write_manifest(manifest_path, stage=STAGE, subject=subject, model=str(model_path), head=str(head_path),
                   torso=str(torso_path), val=final, val_frames=len(frames))
    return final


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("portrait", help="join the lip-tuned head and the torso into the portrait",
                              description="Rule portrait: <results>/<S>/portrait/model.pt from "
                                          "lips/model.pt and torso/model.pt, with whole-frame val PSNR.")
    p.add_argument("--subject", required=True)
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--head", default=None, help="head model (default: <results>/<S>/lips/model.pt)")
    p.add_argument("--torso", default=None, help="torso model (default: <results>/<S>/torso/model.pt)")
    p.add_argument("--val-frames", type=int, default=8, help="val frames rendered for the PSNR (default 8)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> dict:
    subject_dir = Path(args.results) / args.subject
    return assemble_portrait(subject=args.subject, data_dir=subject_dir / "data",
                             head_path=args.head or subject_dir / "lips" / "model.pt",
                             torso_path=args.torso or subject_dir / "torso" / "model.pt",
                             model_path=subject_dir / "portrait" / "model.pt",
                             manifest_path=subject_dir / "manifests" / "portrait.json",
                             val_frames=args.val_frames, device=args.device)
