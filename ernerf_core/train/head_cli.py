"""``ernerf train-head`` and ``ernerf finetune-lips``: the training stages by hand.

Both read the same config file as the workflow (``--config``, default config/config.yaml),
take ``train`` (seed, loss, huber_delta, preset, mixed_precision, device, and the ``head`` / ``lips`` section) and
``model`` from it, and call the functions the Snakemake scripts call, on
``results/<subject>/`` (or ``--subject-dir``).
"""

from __future__ import annotations

from pathlib import Path

import yaml

STAGES = {"train-head": ("head", "train_head"), "finetune-lips": ("lips", "finetune_lips")}


def stage_settings(config: dict, section: str) -> dict:
    """What ``train_settings(stage)`` gives the rule: shared keys, ``model`` and the section."""
    train = config.get("train", {}) or {}
    shared = {k: train[k] for k in ("seed", "loss", "huber_delta", "preset", "mixed_precision") if k in train}
    return {**shared, "model": config.get("model", {}) or {}, **(train.get(section) or {})}


def _run(args) -> dict:
    from .head import train_head
    from .lips import finetune_lips

    section, stage = STAGES[args.command]
    config = yaml.safe_load(Path(args.config).read_text()) if args.config and Path(args.config).exists() else {}
    settings = stage_settings(config, section)
    if args.iters is not None:
        settings["iters"] = args.iters
    device = args.device or (config.get("train") or {}).get("device", "auto")
    subject_dir = Path(args.subject_dir) if args.subject_dir else Path("results") / args.subject
    common = dict(subject=args.subject, data_dir=subject_dir / "data", settings=settings, device=device,
                  manifest_path=subject_dir / "manifests" / f"{stage}.json")
    if stage == "train_head":
        return train_head(model_path=subject_dir / "head" / "model.pt", **common)
    return finetune_lips(head_path=subject_dir / "head" / "model.pt",
                         model_path=subject_dir / "lips" / "model.pt", **common)


def add_cli(subparsers) -> None:
    for name, (section, stage) in STAGES.items():
        p = subparsers.add_parser(name, help=f"run the {stage} stage for one subject",
                                  description=f"Run {stage} as the workflow does (config train.{section}).")
        p.add_argument("subject", help="subject name (folder results/<subject>)")
        p.add_argument("--subject-dir", help="subject folder (default results/<subject>)")
        p.add_argument("--config", default="config/config.yaml", help="workflow config file")
        p.add_argument("--iters", type=int, help=f"override train.{section}.iters")
        p.add_argument("--device", help="auto, cpu, cuda (default: train.device)")
        p.set_defaults(func=_run)
