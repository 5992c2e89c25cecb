"""Glue between a Snakemake ``script:`` (or the CLI) and a stage function.

Sets up logging to the rule's log file and to stderr, honours ``threads``, and turns a
``StageError`` into one clear line and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .device import set_threads
from .errors import StageError
from .subjects import subject_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(log_path: str | None = None) -> None:
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)


def run_stage(func: Callable[..., Any], *, log_path: str | None = None,
              threads: int | None = None, **kwargs: Any) -> Any:
    configure_logging(log_path)
    set_threads(threads)
    try:
        return func(**kwargs)
    except StageError as err:
        logging.getLogger("ernerf").error("%s", err)
        print(f"ERROR {err}", file=sys.stderr)
        raise SystemExit(1) from None
    except Exception:
        logging.getLogger("ernerf").error("unexpected failure:\n%s", traceback.format_exc())
        raise


def run_from_snakemake(smk: Any, func: Callable[..., Any], **kwargs: Any) -> Any:
    """Call ``func`` with the rule's log and threads; kwargs carry inputs/outputs/params."""
    log_path = smk.log[0] if len(smk.log) else None
    return run_stage(func, log_path=log_path, threads=smk.threads, **kwargs)


def use_subject_config(smk: Any) -> dict:
    """First line of a subject's script: make ``snakemake.config`` the config of the job's
    subject (its sample-sheet or mapping overrides applied, ``subjects.subject_config``), so
    every setting the script reads is that subject's. Returns it."""
    subject = getattr(smk.wildcards, "subject", None)
    if subject is not None:
        smk.config = subject_config(smk.config, subject)
    return smk.config
