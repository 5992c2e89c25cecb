"""Training checkpoints: full state, written atomically, the latest ``keep`` kept.

A checkpoint is a plain dict (``weights_only=True`` loadable): ``step``, ``settings`` (a
canonical JSON string of everything that defines the run), ``model``, ``optimizer``,
``scheduler``, ``ema``, ``rng``, ``extra`` (e.g. the error map). Files are
``<dir>/step_<0000123>.pt``. On resume, only a checkpoint whose ``settings`` equal the current
ones is used: a changed config or changed data starts afresh instead of mixing runs.

A checkpoint that cannot be read (truncated by a kill or a full disk, or damaged) or that
carries pickled objects other than tensors and plain values (refused: ``weights_only``
loading never runs code from a file) is skipped with a warning naming the file and why,
and the previous one is used. Temporaries a killed save left behind are removed by the
next save.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from pathlib import Path

import torch

from ..fsio import atomic_file

log = logging.getLogger(__name__)
_NAME = re.compile(r"^step_(\d+)\.pt$")


def settings_key(settings: dict) -> str:
    return json.dumps(settings, sort_keys=True, default=str)


def list_checkpoints(directory) -> list[tuple[int, Path]]:
    """(step, path) of the checkpoints in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for p in directory.iterdir():
        m = _NAME.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return sorted(found)


def save_checkpoint(directory, step: int, state: dict, keep: int = 2) -> Path:
    directory = Path(directory)
    path = directory / f"step_{step:07d}.pt"
    if directory.is_dir():  # one trainer owns the folder: a temporary here is a killed save's
        for stale in directory.glob(".step_*.tmp-*"):
            stale.unlink(missing_ok=True)
    with atomic_file(path) as tmp:
        torch.save({"step": step, **state}, tmp)
    for _, old in list_checkpoints(directory)[:-keep]:
        old.unlink(missing_ok=True)
    return path


def why_unreadable(err: Exception) -> str:
    """What a failed ``torch.load(weights_only=True)`` means, in words."""
    if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
        return ("it carries pickled objects other than tensors and plain values, which weights-only "
                "loading refuses (such a file can run code when loaded)")
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"it is truncated or damaged ({type(err).__name__}: {first[:160]})"


def load_latest(directory, settings: str) -> dict | None:
    """The newest readable checkpoint whose settings equal ``settings``, else None."""
    for step, path in reversed(list_checkpoints(directory)):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # a damaged or refused file: fall back to the previous one
            log.warning("ignoring checkpoint %s: %s; trying the previous one", path, why_unreadable(err))
            continue
        if not isinstance(state, dict) or not isinstance(state.get("step"), int):
            log.warning("ignoring checkpoint %s: it is not a training checkpoint (no step); trying the "
                        "previous one", path)
            continue
        if state.get("settings") != settings:
            log.info("ignoring checkpoint %s: made with different settings or data", path.name)
            continue
        log.info("resuming from %s (step %d)", path.name, step)
        return state
    return None
