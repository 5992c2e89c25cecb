"""Why is the torso blurry, and what sharpens it? ``python -m benchmarks.torso_variants``.

For a subject the workflow has preprocessed (``--data`` = its ``results/<subject>/data``), one
torso per variant below, each with the same schedule and seed (``--preset``, default ``cpu``),
measured on every val frame at the training size: PSNR of the torso over ``bc.jpg`` against the
frame's torso image over ``bc.jpg``, on the whole frame and inside the torso (the torso image's
alpha), with the test-time individual code both ways: code 0 (the reference) and the mean of the
training codes. Two torsos train side by side (one thread each). Prints a table, writes
``<out>/torso_variants.json``. A developer tool, not part of the test suite; the findings are in
docs/real_faces.md.
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

# name -> torso settings that differ from the stage defaults
VARIANTS: dict[str, dict] = {
    "base": {"torso_ray_share": 0.0},
    "rays75": {"torso_ray_share": 0.75},
    "rays75_x2": {"torso_ray_share": 0.75, "iters_scale": 2.0},
    "base_x2": {"torso_ray_share": 0.0, "iters_scale": 2.0},
    "base_x4": {"torso_ray_share": 0.0, "iters_scale": 4.0},
}


def _psnr(mse: float) -> float:
    import math

    return -10 * math.log10(max(mse, 1e-12))


def measure(model_path: Path, data: Path, subject: str) -> dict:
    import numpy as np
    import torch

    from ernerf_core.model.portrait import torso_over_background
    from ernerf_core.model.torso import TorsoConfig, TorsoNet, read_torso_file
    from ernerf_core.train.dataset import SubjectDataset
    from ernerf_core.train.torso import TORSO_PARTS

    payload = read_torso_file(model_path)
    torso = TorsoNet(TorsoConfig.from_dict(payload["config"]))
    torso.load_state_dict(payload["state_dict"])
    torso.eval()
    downscale = float(payload["meta"]["train"]["settings"]["downscale"])
    val = SubjectDataset(data, "val", downscale=downscale, cache_mb=256, subject=subject, stage="torso_variants",
                         **TORSO_PARTS)
    bc = torch.from_numpy(val.bc).float() / 255
    codes = torso.individual_codes.detach().clone()
    out = {}
    for name, code in (("code0", codes[0]), ("mean_code", codes.mean(0))):
        with torch.no_grad():
            torso.individual_codes[0] = code
        whole, inside = [], []
        for i in range(len(val)):
            with torch.no_grad():
                pred, _ = torso_over_background(torso, val.poses[i], bc)
            real = torch.from_numpy(val.background(i)).float() / 255
            err = ((pred - real) ** 2).mean(-1).numpy()
            mask = val.torso_rgba(i)[..., 3] > 0
            whole.append(float(err.mean()))
            if mask.any():
                inside.append(float(err[mask].mean()))
        out[name] = {"psnr": float(np.mean([_psnr(m) for m in whole])),
                     "psnr_torso": float(np.mean([_psnr(m) for m in inside]))}
    with torch.no_grad():
        torso.individual_codes[0] = codes[0]
    return {"frames": len(val), **out}


def run_variant(name: str, data: Path, out: Path, settings: dict, subject: str) -> dict:
    from ernerf_core.device import set_threads
    from ernerf_core.train.schedule import stage_settings
    from ernerf_core.train.torso import train_torso

    set_threads(1)
    settings = dict(settings)
    scale = settings.pop("iters_scale", 1.0)
    if scale != 1.0:
        filled = stage_settings(settings, "train_torso", subject=subject, data_dir=data, device_type="cpu")
        settings["iters"] = int(round(filled["iters"] * scale))
    root = out / name
    t0 = time.perf_counter()
    train_torso(subject=subject, data_dir=data, model_path=root / "torso" / "model.pt",
                manifest_path=root / "train_torso.json", settings=settings, device="cpu")
    train_s = time.perf_counter() - t0
    manifest = json.loads((root / "train_torso.json").read_text())
    return {"variant": name, "iters": manifest["steps"], "train_s": round(train_s, 1),
            **measure(root / "torso" / "model.pt", data, subject)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap, "torso", "cpu", iters=False)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    data = subject_data(args.data, ("torso_imgs", "transforms_train.json"))
    if data is None:
        return 2
    subject, out = data.parent.name, args.out.resolve()
    base = {"preset": args.preset, "seed": args.seed}
    jobs = [(v, data, out, {**base, **VARIANTS[v]}, subject) for v in args.variants]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_variant, *zip(*jobs, strict=True)))
    (out / "torso_variants.json").write_text(json.dumps({"data": os.fspath(data), "settings": base,
                                                        "variants": {v: VARIANTS[v] for v in args.variants},
                                                        "rows": rows}, indent=2) + "\n")
    print(f"{subject}: torso {args.preset} preset, seed {args.seed}, {rows[0]['frames']} val frames; PSNR dB "
          "(whole frame / inside the torso) with test code 0 and the mean training code")
    print(f"{'variant':<12} {'steps':>6} {'code0':>6} {'torso':>6} {'mean':>6} {'torso':>6} {'train s':>7}")
    for r in rows:
        print(f"{r['variant']:<12} {r['iters']:>6} {r['code0']['psnr']:>6.2f} {r['code0']['psnr_torso']:>6.2f} "
              f"{r['mean_code']['psnr']:>6.2f} {r['mean_code']['psnr_torso']:>6.2f} {r['train_s']:>7.0f}")
    print(f"-> {out / 'torso_variants.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
