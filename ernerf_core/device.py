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
