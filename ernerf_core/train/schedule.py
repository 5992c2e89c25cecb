"""Training schedules by use: the ``train.preset`` presets and the step counts they give a subject.

A preset sets, for each training stage, what decides how long training runs and at what
size: steps (``iters``), rays per step (``num_rays``), training size (``downscale``) and, for
the head, the grid learning rate (``lr``). A key set in the stage's own config section wins
over the preset; every other key keeps the stage's defaults.

- ``preview``: a quick look, the same for every subject (the demo's schedule: 3.7 minutes of
  training for the 20 s demo on 2 CPU cores).
- ``cpu``: the standard CPU run. Steps grow with the subject's training frames
  (``CPU_STEPS_PER_FRAME`` head steps a frame, within ``CPU_HEAD_STEPS``): every frame is
  drawn a few times whatever the clip length, and a long video stays within an evening on
  a laptop.
- ``gpu``: the reference's schedule (head 100k steps of 65,536 rays at full size, lips
  25k, torso 200k), meant for a CUDA device.
- ``auto`` (the workflow's default): ``gpu`` when the stage runs on CUDA, else ``cpu``.
"""

from __future__ import annotations

from ..errors import StageError
from .dataset import split_size

PRESETS = ("auto", "preview", "cpu", "gpu")
STAGES = ("train_head", "finetune_lips", "train_torso")
# the keys a preset sets, per stage
SCHEDULE_KEYS = {"train_head": ("iters", "num_rays", "downscale", "lr"),
                 "finetune_lips": ("iters", "num_rays", "downscale"),
                 "train_torso": ("iters", "num_rays", "downscale")}

PREVIEW = {
    "train_head": {"iters": 1200, "num_rays": 4096, "downscale": 2.0, "lr": 2e-2},
    "finetune_lips": {"iters": 200, "num_rays": 4096, "downscale": 2.0},
    "train_torso": {"iters": 600, "num_rays": 4096, "downscale": 2.0},
}
GPU = {  # the reference (its default lr 1e-2 for the grids)
    "train_head": {"iters": 100_000, "num_rays": 65_536, "downscale": 1.0, "lr": 1e-2},
    "finetune_lips": {"iters": 25_000, "num_rays": 65_536, "downscale": 1.0},
    "train_torso": {"iters": 200_000, "num_rays": 65_536, "downscale": 1.0},
}
CPU_STEPS_PER_FRAME = 4
CPU_HEAD_STEPS = (3000, 12_000)  # at 0.14 s a step (make demo, 2 cores): 7 to 28 minutes
CPU_LIPS_SHARE = 1 / 6  # lip steps per head step (the reference: 25k after 100k, 1/4)
CPU_TORSO_SHARE = 1.0  # torso steps per head step (1/2 measured 0.8 dB blurrier inside the torso)


def _round100(x: float) -> int:
    return int(round(x / 100.0)) * 100


def cpu_schedule(stage: str, n_train: int) -> dict:
    """The ``cpu`` preset's settings of ``stage`` for a subject with ``n_train`` training frames."""
    lo, hi = CPU_HEAD_STEPS
    head = min(hi, max(lo, _round100(CPU_STEPS_PER_FRAME * n_train)))
    iters = {"train_head": head, "finetune_lips": max(200, _round100(head * CPU_LIPS_SHARE)),
             "train_torso": _round100(head * CPU_TORSO_SHARE)}[stage]
    return {**PREVIEW[stage], "iters": iters}


def resolve_preset(preset: str, device_type: str) -> str:
    """The concrete preset: ``auto`` is ``gpu`` on a CUDA device, else ``cpu``."""
    if preset not in PRESETS:
        raise ValueError(f"train.preset {preset!r} is not one of {', '.join(PRESETS)}")
    if preset == "auto":
        return "gpu" if device_type == "cuda" else "cpu"
    return preset


def preset_schedule(preset: str, stage: str, n_train: int, device_type: str) -> dict:
    """Settings that ``preset`` gives ``stage`` (keys :data:`SCHEDULE_KEYS`), plus ``preset``:
    the concrete preset it resolved to, for the manifest."""
    if stage not in STAGES:
        raise ValueError(f"no schedule for stage {stage!r}")
    name = resolve_preset(preset, device_type)
    if name == "cpu":
        values = cpu_schedule(stage, n_train)
    else:
        values = (PREVIEW if name == "preview" else GPU)[stage]
    return {**values, "preset": name}


def apply_preset(settings: dict, stage: str, n_train: int, device_type: str) -> dict:
    """``settings`` with the keys its preset sets filled in where the stage does not set them
    (a missing or null key). No ``preset`` key: ``settings`` as it is (the stage defaults)."""
    if settings.get("preset") is None:
        return dict(settings)
    schedule = preset_schedule(settings["preset"], stage, n_train, device_type)
    out = dict(settings)
    for key in SCHEDULE_KEYS[stage]:
        if out.get(key) is None:
            out[key] = schedule[key]
    out["preset"] = schedule["preset"]
    return out


def stage_settings(settings: dict, stage: str, *, subject: str, data_dir, device_type: str) -> dict:
    """:func:`apply_preset` for a training stage on ``data_dir`` (its training-frame count);
    an unknown preset stops the stage naming the key."""
    schedule_stage = stage if stage in STAGES else "train_head"  # the study's heads: the head's
    try:
        return apply_preset(settings, schedule_stage, split_size(data_dir, "train"), device_type)
    except ValueError as err:
        raise StageError(subject, stage, str(err), "fix train.preset in the config") from None

