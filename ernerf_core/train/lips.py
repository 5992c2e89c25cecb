"""Stage ``finetune_lips``: the mouth of a trained head, fine-tuned.

``finetune_lips(subject, data_dir, head_path, model_path, manifest_path, settings, device)``
continues from a head ``model.pt`` (:mod:`ernerf_core.train.head`'s run, settings from
:data:`~ernerf_core.train.head.LIPS_DEFAULTS`), alternating patch sampling and whole
lips-rectangle rendering, with an optional LPIPS term; writes ``model.pt`` and the manifest.
"""

from __future__ import annotations

from pathlib import Path

from .head import run_head_stage


def finetune_lips(*, subject: str, data_dir, head_path, model_path, manifest_path, settings: dict | None = None,
                  device: str = "auto") -> dict:
    """Fine-tune the mouth of a trained head (``head_path``); writes ``model_path`` and the manifest."""
    return run_head_stage(stage="finetune_lips", subject=subject, data_dir=data_dir, model_path=model_path,
                          manifest_path=manifest_path, settings=settings, device=device, init_head=Path(head_path))
