"""Progress bars for long per-frame and per-step loops (tqdm, to stderr, log friendly)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T] | None = None, *, desc: str, total: int | None = None,
             unit: str = "it", **kwargs) -> tqdm:
    """A tqdm bar; refreshes at most every 2 s when stderr is not a terminal (log files)."""
    interactive = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                mininterval=0.2 if interactive else 2.0, dynamic_ncols=interactive,
                disable=os.environ.get("ERNERF_NO_PROGRESS") == "1", **kwargs)
