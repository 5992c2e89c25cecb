"""Developer regression case on a real face: ``make regress-real`` / ``python -m benchmarks.real_clip``.

Adds a real talking-head clip (default: the 71 s news anchor in ``../shared/media/``) as a
subject with a training preset (default ``cpu``, the standard CPU run: config/README.md#presets;
``--preset preview`` for a quick look), trained and rendered at half size, in its own results folder
(``results_real/<name>/`` by default, with its own ``.snakemake``), runs the workflow up to
``render_test`` and prints what the issue "real faces" asks for: whole-frame and head-region
PSNR, SSIM, mouth LMD, mouth-opening correlation with its frame count and interval, the
opening's spread against the truth's, the audio-swap figure, SyncNet when weights are given,
and the wall time. The numbers also go to ``<out>/regress.json``.

It is long on a CPU (the 71 s clip: preprocessing about 10 minutes, training 10 or more);
``--video ../shared/media/talking_face_5s.mp4`` is the quick check. Not part of the test
suite or ``make bench``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VIDEO = REPO.parent / "shared" / "media" / "talking_face_cnn_71s.mp4"

PRESET = "cpu"


def write_config(out: Path, name: str, video: Path, syncnet_weights: str | None, preset: str = PRESET,
                 seed: int | None = None) -> Path:
    """The run's config: the repository's config/config.yaml (schema defaults) with this one
    subject, no driving audio, the training ``preset`` (renders at the training size) and, when
    given, ``train.seed``."""
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    base["subjects"] = {name: {"video": str(video)}}
    base["driving_audio"] = {}
    if syncnet_weights:
        base.setdefault("render", {})["syncnet_weights"] = str(Path(syncnet_weights).resolve())
    base.setdefault("train", {})["preset"] = preset
    if seed is not None:
        base["train"]["seed"] = int(seed)
    out.mkdir(parents=True, exist_ok=True)
    # the Snakefile's `configfile: config/config.yaml` is read from the working directory
    (out / "config").mkdir(exist_ok=True)
    path = out / "config" / "config.yaml"
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def summarize(metrics: dict, wall_s: float) -> dict:
    sync = metrics.get("lipsync") or {}
    swap = sync.get("audio_swap") or {}
    spread = sync.get("opening_spread") or {}
    return {
        "frames": metrics.get("frames"),
        "psnr": metrics.get("psnr"),
        "psnr_head_region": metrics.get("psnr_head_region"),
        "ssim": metrics.get("ssim"),
        "lmd_mouth_px": metrics.get("lmd"),
        "lmd_ci95": metrics.get("lmd_ci95"),
        "mouth_corr": sync.get("mouth_corr_truth"),
        "mouth_corr_frames": sync.get("mouth_corr_truth_frames"),
        "mouth_corr_ci95": sync.get("mouth_corr_truth_ci95"),
        "mouth_width_corr": (sync.get("mouth_width_corr_truth") or {}).get("r"),
        "mouth_width_corr_ci95": (sync.get("mouth_width_corr_truth") or {}).get("ci95"),
        "opening_std_render": spread.get("render_std"),
        "opening_std_truth": spread.get("truth_std"),
        "opening_std_ratio": spread.get("ratio"),
        "audio_swap_ratio": swap.get("ratio"),
        "audio_swap_lips_pixel_change": (swap.get("lips_rect_pixel_change") or {}).get("mean"),
        "syncnet": metrics.get("syncnet"),
        "wall_s": wall_s,
    }


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--video", type=Path, default=DEFAULT_VIDEO)
    ap.add_argument("--name", default="real_clip", help="subject name (default real_clip)")
    ap.add_argument("--out", type=Path, default=None, help="results folder (default results_real/<name>)")
    ap.add_argument("--cores", default="all")
    ap.add_argument("--preset", default=PRESET, choices=("preview", "cpu", "gpu", "auto"),
                    help=f"train.preset (default {PRESET})")
    ap.add_argument("--seed", type=int, default=None,
                    help="train.seed of every stage (default: config/config.yaml's); a new seed retrains in place")
    ap.add_argument("--syncnet-weights", default=None, help="syncnet_python's syncnet_v2.model, for LSE-D/C")
    ap.add_argument("--dry-run", action="store_true", help="plan the jobs only")
    args = ap.parse_args(argv)
    if not args.video.exists():
        print(f"{args.video} is missing (the shared media folder is not here); give --video", file=sys.stderr)
        return 2
    out = (args.out or REPO / "results_real" / args.name).resolve()
    config = write_config(out, args.name, args.video.resolve(), args.syncnet_weights, args.preset, args.seed)
    target = f"results/{args.name}/render/metrics.json"
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(out),
           "--configfile", str(config), "--cores", str(args.cores), target]
    if args.dry_run:
        cmd.append("--dry-run")
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    if rc != 0 or args.dry_run:
        return rc
    metrics = json.loads((out / target).read_text())
    head = json.loads((out / "results" / args.name / "manifests" / "train_head.json").read_text())
    schedule = {k: head["params"].get(k) for k in ("preset", "iters", "num_rays", "downscale", "lr", "seed")}
    report = {"video": str(args.video), "schedule": schedule, **summarize(metrics, wall)}
    (out / "regress.json").write_text(json.dumps(report, indent=2) + "\n")
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {_fmt(value)}")
    print(f"-> {out / 'regress.json'} (wall time counts only the jobs that were not already done)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
