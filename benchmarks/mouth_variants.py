"""Which head setting makes the mouth follow the audio? ``python -m benchmarks.mouth_variants``.

For a subject the workflow has preprocessed (``--data`` = its ``results/<subject>/data``), one
head per variant below (``--variants`` picks some), each with the same schedule and seed
(``--preset``, default ``preview``) on its own copy of the subject folder, measured on the whole
val split as :mod:`benchmarks.audio_backends` measures a backend (mouth-opening r with its 95 %
interval, the opening's spread against the truth's, width r, PSNR, LMD). Two heads train side
by side (one thread each). Prints a table, writes ``<out>/mouth_variants.json``. A developer
tool, not part of the test suite; the findings are in docs/real_faces.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor

from .audio_backends import run_backend
from .subject_runs import add_run_args, subject_data

# name -> (audio backend, head settings that differ from the stage defaults)
VARIANTS: dict[str, tuple[str, dict]] = {
    "base": ("mel", {}),
    "att_centre": ("mel", {"model": {"audio_attention_init": "centre"}}),
    "lips_half": ("mel", {"lips_share": 0.5}),
    "input_norm": ("mel", {"model": {"audio_normalize": True}}),
    "code_norm": ("mel", {"model": {"audio_code_norm": True}}),
    "both_norm": ("mel", {"model": {"audio_normalize": True, "audio_code_norm": True}}),
    "both_norm_lr3": ("mel", {"lr_audio_scale": 3.0, "model": {"audio_normalize": True, "audio_code_norm": True}}),
    "mouth_probe_0.01": ("mel", {"lambda_mouth": 0.01}),
    "mouth_probe_0.1": ("mel", {"lambda_mouth": 0.1}),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_run_args(ap, "head", "preview")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args(argv)
    data = subject_data(args.data, ("aud.wav", "transforms_train.json"))
    if data is None:
        return 2
    subject, out = data.parent.name, args.out.resolve()
    base = {"preset": args.preset, "iters": args.iters, "seed": args.seed}
    jobs = [(VARIANTS[v][0], data, out, {**base, **VARIANTS[v][1]}, subject, v) for v in args.variants]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(pool.map(run_backend, *zip(*jobs, strict=True)))
    (out / "mouth_variants.json").write_text(json.dumps({"data": os.fspath(data), "settings": base,
                                                         "variants": {v: VARIANTS[v] for v in args.variants},
                                                         "rows": rows}, indent=2) + "\n")
    print(f"{subject}: head {args.preset} preset{f', {args.iters} steps' if args.iters else ''}, seed {args.seed}")
    print(f"{'variant':<22} {'frames':>6} {'PSNR':>6} {'face':>6} {'LMD':>5} {'mouth r':>8} {'95% CI':>16} "
          f"{'spread':>6} {'width r':>7} {'train s':>7}")
    nan = float("nan")
    for r in rows:
        ci = r["mouth_corr_ci95"] or [nan] * 2
        print(f"{r['variant']:<22} {r['frames']:>6} {r['psnr']:>6.2f} {r['psnr_head']:>6.2f} {r['lmd'] or 0:>5.2f} "
              f"{r['mouth_corr'] or nan:>8.3f} [{ci[0]:>6.3f}, {ci[1]:>6.3f}] "
              f"{r['opening_spread_ratio'] or nan:>6.2f} {r['mouth_width_corr'] or nan:>7.3f} {r['train_s']:>7.0f}")
    print(f"-> {out / 'mouth_variants.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
