"""The trained head as a file: ``model.pt`` written by train_head / finetune_lips.

Format (a plain dict of tensors and JSON-like values, loadable with ``weights_only=True``):
``format`` "ernerf-head/1"; ``config`` (:meth:`HeadConfig.as_dict`); ``state_dict`` (EMA
weights, occupancy grid buffers included); ``meta``: ``audio`` {backend, channels, window},
``scene`` {scale, offset}, ``data`` {H, W, intrinsics (full resolution), n_train},
``train`` {stage, steps, settings, metrics}.

``load_head(path, device) -> HeadNetwork`` (with ``.meta``) is what the torso and render
stages call.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from ..fsio import atomic_file
from .head import HeadConfig, HeadNetwork

FORMAT = "ernerf-head/1"


def save_model_file(path, fmt: str, model, meta: dict) -> None:
    """Write ``{format, config, state_dict, meta}`` atomically; ``model`` has ``config.as_dict()``
    (state dict as given: apply EMA weights before calling)."""
    payload = {"format": fmt, "config": model.config.as_dict(),
               "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}, "meta": meta}
    with atomic_file(path) as tmp:
        torch.save(payload, tmp)


def load_weights_only(path):
    """``torch.load(weights_only=True)`` on the CPU. A file that carries pickled objects other
    than tensors and plain values is refused with a ValueError that says so (loading such a
    file the ordinary way can run code from it)."""
    try:
        return torch.load(Path(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(f"{path} carries pickled objects other than tensors and plain values, which "
                         "weights-only loading refuses (such a file can run code when loaded)") from err


def read_model_file(path, fmt: str, what: str) -> dict:
    """The raw dict of a file written by :func:`save_model_file` (weights_only=True), with its
    format checked: ValueError naming ``what`` otherwise."""
    payload = load_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != fmt:
        raise ValueError(f"{path} is not an ER-NeRF {what} model ({fmt})")
    return payload


def save_head(path, model: HeadNetwork, meta: dict) -> None:
    """Write the head's model.pt atomically (apply EMA weights before calling)."""
    save_model_file(path, FORMAT, model, meta)


def read_head_file(path) -> dict:
    """The raw head model.pt dict, with its format checked."""
    return read_model_file(path, FORMAT, "head")


def load_head(path, device="cpu") -> HeadNetwork:
    """Rebuild the head from model.pt, in eval mode on ``device``; ``model.meta`` holds the rest."""
    payload = read_head_file(path)
    model = HeadNetwork(HeadConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.meta = payload["meta"]
    return model.to(device).eval()
