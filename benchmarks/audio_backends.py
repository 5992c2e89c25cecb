"""Which audio features make the mouth follow the audio? ``python -m benchmarks.audio_backends``.

For a subject the workflow has preprocessed (``--data`` = its ``results/<subject>/data``), each
audio backend (default ``mel``, ``phones``, ``mel_phones``) gets its own copy of the subject
folder (links to every file but the audio features), its features from the subject's
``aud.wav``, and a head trained with the same schedule and seed; then the head is measured on
the whole val split as the study measures its runs (``ernerf_core.study.metrics``: PSNR, LMD,
mouth-opening correlation with the truth and its 95 % interval, the opening's spread against
the truth's). Two heads train side by side (one thread each). Prints a table and writes
``<out>/audio_backends.json``. A developer tool, not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from .subject_runs import add_run_args, subject_data

BACKENDS = ("mel", "phones", "mel_phones")


def _subject_copy(data: Path, root: Path) -> Path:
    """``root/data``: links to the files of ``data`` except its audio features."""
    copy = root / "data"
    copy.mkdir(parents=True, exist_ok=True)
    for entry in data.iterdir():
        link = copy / entry.name
        if entry.name.startswith("aud") and entry.suffix == ".npy" or link.exists():
            continue
        link.symlink_to(entry.resolve())
    return copy


def run_backend(backend: str, data: Path, out: Path, settings: dict, subject: str,
                name: str | None = None) -> dict:
    """One head on ``backend``'s features in ``out/<name or backend>``, measured on the whole
    val split (``settings``: the head stage's, ``model`` included)."""
    from ernerf_core.audio import AUDIO_FEATURE_FILE, extract_features
    from ernerf_core.device import set_threads
    from ernerf_core.study.metrics import measure_study_run
    from ernerf_core.train.head import train_head

    set_threads(1)
    root = out / (name or backend)
    data_dir = _subject_copy(data, root)
    manifests = root / "manifests"
    t0 = time.perf_counter()
    extract_features(subject=subject, audio=data / "aud.wav", features_path=data_dir / AUDIO_FEATURE_FILE[backend],
                     manifest_path=manifests / "audio_features.json", backend=backend)
    features_s = time.perf_counter() - t0
    train_head(subject=subject, data_dir=data_dir, model_path=root / "head" / "model.pt",
               manifest_path=manifests / "train_head.json", settings=settings, device="cpu")
    metrics = measure_study_run(subject=subject, data_dir=data_dir, model_path=root / "head" / "model.pt",
                                manifests=[manifests / "train_head.json"], metrics_path=root / "metrics.json",
                                variant=name or backend, seed=int(settings.get("seed", 0)), device="cpu")
    sync = metrics.get("lipsync") or metrics
    spread = sync.get("opening_spread") or {}
    return {"variant": name or backend, "backend": backend, "frames": metrics["frames"], "psnr": metrics["psnr"],
            "psnr_head": metrics["psnr_head"],
            "lmd": metrics.get("lmd"), "mouth_corr": sync.get("mouth_corr_truth"),
            "mouth_corr_ci95": sync.get("mouth_corr_truth_ci95"), "opening_spread_ratio": spread.get("ratio"),
            "mouth_width_corr": (sync.get("mouth_width_corr_truth") or {}).get("r"),
            "features_s": round(features_s, 1), "train_s": metrics["train_seconds"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap, "head", "cpu")
    ap.add_argument("--backends", nargs="+", default=list(BACKENDS))
    args = ap.parse_args(argv)
    data = subject_data(args.data, ("aud.wav", "transforms_train.json"))
    if data is None:
        return 2
    subject = data.parent.name
    settings = {"preset": args.preset, "iters": args.iters, "seed": args.seed}
    out = args.out.resolve()
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_backend, args.backends, [data] * len(args.backends), [out] * len(args.backends),
                             [settings] * len(args.backends), [subject] * len(args.backends)))
    (out / "audio_backends.json").write_text(json.dumps({"data": os.fspath(data), "settings": settings,
                                                         "rows": rows}, indent=2) + "\n")
    print(f"{subject}: head {args.preset} preset{f', {args.iters} steps' if args.iters else ''}, seed {args.seed}")
    print(f"{'backend':<11} {'frames':>6} {'PSNR':>6} {'face':>6} {'LMD':>5} {'mouth r':>8} {'95% CI':>16} "
          f"{'spread':>6} {'train s':>7}")
    for r in rows:
        ci = r["mouth_corr_ci95"] or [float("nan")] * 2
        print(f"{r['backend']:<11} {r['frames']:>6} {r['psnr']:>6.2f} {r['psnr_head']:>6.2f} {r['lmd'] or 0:>5.2f} "
              f"{r['mouth_corr'] or float('nan'):>8.3f} [{ci[0]:>6.3f}, {ci[1]:>6.3f}] "
              f"{r['opening_spread_ratio'] or float('nan'):>6.2f} {r['train_s']:>7.0f}")
    print(f"-> {out / 'audio_backends.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
