"""Print what a workflow run made: per subject, each stage's manifest and the videos.

`make demo` ends with this, so a user sees at a glance what exists and how good it is.
Usage: python -m ernerf_core.summary [config.yaml] [results_dir]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from .subjects import subject_names

# Stage -> manifest keys worth one line each ("a.b" reads a nested key; missing keys are skipped).
HIGHLIGHTS = {
    "normalize": ["frames", "resolution", "duration"],
    "landmarks": ["frames", "interpolated_frames"],
    "parsing": ["frames"],
    "background": ["clear_share"],
    "torso_gt": ["frames", "mean_torso_coverage"],
    "blink": ["frames", "au45_mean"],
    "tracking": ["frames", "focal", "reprojection_px.median", "seconds"],
    "transforms": ["train_frames", "val_frames"],
    "audio_features": ["backend", "frames", "feature_shape"],
    "train_head": ["steps", "val.psnr", "val.lmd", "train_seconds"],
    "finetune_lips": ["steps", "val.psnr", "val.lmd", "train_seconds"],
    "train_torso": ["steps", "val.torso_psnr", "train_seconds"],
    "portrait": ["val.psnr", "val.torso_psnr"],
}


def _lookup(data: dict, key: str):
    for part in key.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summarize(config_path: Path = Path("config/config.yaml"), results: Path = Path("results")) -> str:
    config = yaml.safe_load(config_path.read_text())
    lines = []
    for subject in subject_names(config):  # the mapping's and the sample sheet's
        root = results / subject
        lines.append(f"subject {subject}: {root}")
        manifests = root / "manifests"
        for path in sorted(manifests.glob("*.json")) if manifests.exists() else []:
            data = json.loads(path.read_text())
            keys = HIGHLIGHTS.get(path.stem, [])
            shown = ", ".join(f"{k}={_fmt(_lookup(data, k))}" for k in keys if _lookup(data, k) is not None)
            lines.append(f"  {path.stem:<16} {shown}")
        metrics = root / "render" / "metrics.json"
        if metrics.exists():
            data = json.loads(metrics.read_text())
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in data.items() if not isinstance(v, (dict, list)))
            lines.append(f"  {'render metrics':<16} {shown}")
            sync = data.get("lipsync") or {}
            lines.append(f"  {'lip sync':<16} " + ", ".join(f"{k}={_fmt(v)}" for k, v in sync.items()
                                                          if not isinstance(v, (dict, list))))
        for video in sorted((root / "render").rglob("*.mp4")) if (root / "render").exists() else []:
            lines.append(f"  video            {video} ({video.stat().st_size / 1e6:.1f} MB)")
    return "\n".join(lines)


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:]]
    print(summarize(*args))
