"""Device selection: ``auto`` means CUDA when present, else CPU."""

from __future__ import annotations

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    """Honour Snakemake's ``threads:`` in torch (intra-op) work."""
    if threads and threads > 0:
        torch.set_num_threads(int(threads))
