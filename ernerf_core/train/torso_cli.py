"""``ernerf train-torso``: rule ``train_torso`` by hand (resumes from its checkpoints)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-torso", help="train the torso network (no head needed)",
                              description="Rule train_torso: <results>/<S>/torso/model.pt (the torso "
                                          "network) and its manifest; rerunning after a kill resumes.")
    p.add_argument("--subject", required=True)
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--data-dir", default=None, help="subject folder (default: <results>/<S>/data)")
    p.add_argument("--out", default=None, help="model to write (default: <results>/<S>/torso/model.pt)")
    p.add_argument("--settings", default=None,
                   help='JSON of train settings, e.g. \'{"iters": 500, "loss": "l1"}\' '
                        '(missing keys: defaults)')
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> dict:
    from .torso import train_torso

    subject_dir = Path(args.results) / args.subject
    return train_torso(subject=args.subject, data_dir=args.data_dir or subject_dir / "data",
                       model_path=args.out or subject_dir / "torso" / "model.pt",
                       manifest_path=subject_dir / "manifests" / "train_torso.json",
                       settings=json.loads(args.settings) if args.settings else {}, device=args.device)
