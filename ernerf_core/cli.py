"""``ernerf``: every workflow stage as a subcommand, run exactly as the rule runs it.

Each stage module defines ``add_cli(subparsers)``, which adds its subcommand and sets
``func`` (called with the parsed namespace). Modules are imported when the command line
is parsed, so ``ernerf --help`` lists every stage.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .stage_runner import configure_logging

# Order = the order of the pipeline, as shown by ``ernerf --help``.
STAGE_MODULES = [
    "ernerf_core.demo",
    "ernerf_core.preprocess.normalize",
    "ernerf_core.preprocess.landmarks",
    "ernerf_core.preprocess.parsing",
    "ernerf_core.preprocess.background",
    "ernerf_core.preprocess.torso_gt",
    "ernerf_core.preprocess.blink",
    "ernerf_core.preprocess.preview",
    "ernerf_core.preprocess.tracking",
    "ernerf_core.preprocess.transforms",
    "ernerf_core.audio",
    "ernerf_core.train.head_cli",
    "ernerf_core.train.torso_cli",
    "ernerf_core.train.portrait",
    "ernerf_core.render.cli",
    "ernerf_core.render.browser_check",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ernerf", description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="also write the log to this file")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    sub = parser.add_subparsers(dest="command", required=True, metavar="STAGE")
    for name in STAGE_MODULES:
        importlib.import_module(name).add_cli(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .stage_runner import run_stage

    args = build_parser().parse_args(argv)
    configure_logging(args.log)
    run_stage(args.func, log_path=args.log, threads=args.threads, args=args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
