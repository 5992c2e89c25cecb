"""Device selection: ``auto`` means CUDA when present, else CPU."""

from __future__ import annotations

import os

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    return torch.device(name)


# train.mixed_precision: auto = float16 autocast on CUDA (the reference's --fp16), none on a
# CPU (no float16 or bfloat16 units on the CPUs measured here); on = float16 on CUDA, bfloat16
# on a CPU (slow there: for checking the path without a GPU)
PRECISIONS = ("auto", "off", "on")


def resolve_precision(setting: str | bool, device_type: str) -> str:
    """``train.mixed_precision`` on ``device_type``: "fp16", "bf16" or "off". YAML reads a bare
    on / off as a boolean: True and False mean "on" and "off"."""
    if isinstance(setting, bool):
        setting = "on" if setting else "off"
    if setting not in PRECISIONS:
        raise ValueError(f"train.mixed_precision {setting!r} is not one of {', '.join(PRECISIONS)}")
    if setting == "off" or (setting == "auto" and device_type != "cuda"):
        return "off"
    return "fp16" if device_type == "cuda" else "bf16"


# The thread count the job was given (Snakemake ``threads:``, ``ernerf --threads``); None = not set.
_JOB_THREADS: int | None = None

# What OpenMP, BLAS and their kin read when they start: set for the libraries a stage loads
# later and for the processes it starts.
THREAD_ENV_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS")


def set_threads(threads: int | None) -> None:
    """Give the job's thread count to torch (intra-op threads) and to OpenMP/BLAS (environment)."""
    global _JOB_THREADS
    if threads and threads > 0:
        _JOB_THREADS = int(threads)
        torch.set_num_threads(_JOB_THREADS)
        for name in THREAD_ENV_VARS:
            os.environ[name] = str(_JOB_THREADS)


def job_threads() -> int | None:
    """The thread count :func:`set_threads` was given, None when the caller set none."""
    return _JOB_THREADS
