"""``make demo`` with the native kernels against ``ERNERF_EXT=off``, side by side on this machine.

``python -m benchmarks.demo_kernels [--out results_kernels]``: runs the demo workflow
(``config/config.yaml``, every default target, as ``make demo``) up to the head's training once
in ``<out>/prep`` (video, face parsing, tracking, audio features: no kernel runs there), copies
that folder (with its ``.snakemake``) to ``<out>/auto`` and ``<out>/off``, and runs the rest of the
workflow (head, lips, torso, portrait, renders) in each with ``ERNERF_EXT`` set, one after the
other. Prints and writes ``<out>/demo_kernels.json``: the wall time of each, their ratio, the
head's val PSNR of each (the issue asks for a difference within 0.3 dB) and the val render's
whole-frame PSNR. Not part of ``make bench`` (about 15 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUBJECT = "demo"


def snakemake(work: Path, extra: list[str], env: dict | None = None, cores: str = "all") -> float:
    """Run the workflow in ``work`` (the repository's Snakefile and config); seconds it took."""
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(REPO / "config" / "config.yaml"), "--cores", cores, *extra]
    print(" ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def read_numbers(work: Path) -> dict:
    results = work / "results" / SUBJECT
    head = json.loads((results / "manifests" / "train_head.json").read_text())
    metrics = json.loads((results / "render" / "metrics.json").read_text())
    return {"head_val_psnr": head["val"]["psnr"], "head_train_seconds": head.get("train_seconds"),
            "render_test_psnr": metrics.get("psnr"), "render_test_ssim": metrics.get("ssim")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "results_kernels")
    ap.add_argument("--cores", default="all")
    args = ap.parse_args(argv)
    out = args.out.resolve()
    prep = out / "prep"
    prep.mkdir(parents=True, exist_ok=True)
    # the Snakefile reads config/config.yaml from the working directory
    shutil.copytree(REPO / "config", prep / "config", dirs_exist_ok=True)
    prep_s = snakemake(prep, ["--omit-from", "train_head", "train_torso"], cores=args.cores)
    report = {"preprocessing_seconds": round(prep_s, 1)}
    for mode in ("auto", "off"):
        work = out / mode
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(prep, work, symlinks=True)
        seconds = snakemake(work, [], env={"ERNERF_EXT": mode}, cores=args.cores)
        report[mode] = {"seconds_after_preprocessing": round(seconds, 1), **read_numbers(work)}
    seconds = {mode: report[mode]["seconds_after_preprocessing"] for mode in ("auto", "off")}
    report["ratio"] = round(seconds["off"] / seconds["auto"], 2)
    report["head_val_psnr_difference_db"] = round(report["auto"]["head_val_psnr"] - report["off"]["head_val_psnr"], 3)
    (out / "demo_kernels.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
