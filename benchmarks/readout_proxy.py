"""How much of the mouth can the audio code learn? ``python -m benchmarks.readout_proxy``.

A proxy of the head's audio path that trains in under a minute: the head's audio encoder and
frame attention (built by :func:`~ernerf_core.model.head.build_head`, as the head builds them,
with the head's learning rates and decay) and a linear read-out, trained on the training
frames' audio windows to predict a target of the frame's mouth (``train.head.lambda_mouth``'s
read-out without the photometric term), 32 frames a step. Scored on the val split: the
correlation of the read-out's first two outputs with the true lip gap and mouth width (over
the eye distance, :func:`~ernerf_core.train.mouth_probe.mouth_shape`), every fifth of the run.

Variants change what the read-out learns (``--variants``; each run with every ``--seeds``):

- ``base``: gap and width, standardised (what the head's read-out learns);
- ``pca<k>``: and the first k principal components of the 20 lip landmarks (centred on the
  mouth, rotated to the eye line, over the eye distance);
- ``lips40``: and those 40 coordinates themselves;
- ``smooth<k>``: gap and width averaged over k neighbouring frames (tracker noise removed);
- ``lr<x>``: ``base`` with the audio learning rates times x.

The rendered mouth is not measured here; the read-out's r stands in for what the head can
learn from the audio (on the 71 s anchor it is a little below the rendered r). Two runs side
by side (one thread each). Prints mean and spread over the seeds, writes
``<out>/readout_proxy.json``. A developer tool, not part of the test suite; the findings are in
docs/real_faces.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from .subject_runs import subject_data

BATCH = 32
CHECKPOINTS = 5
LIPS = slice(48, 68)  # the 68-point model's 20 lip landmarks
AUDIO_GROUPS = ("audio_net", "audio_att_net")  # HeadNetwork.param_groups' audio encoder and frame attention
VARIANT = re.compile(r"^(base|lips40|pca\d+|smooth\d+|lr\d*\.?\d+)$")


def lip_coords(landmarks: np.ndarray) -> np.ndarray:
    """[N, 68, 2] -> [N, 40]: the lip landmarks centred on their mean, rotated so the eye line is
    horizontal, over the eye distance (so head roll, position and scale drop out)."""
    from ernerf_core.train.mouth_probe import EYE_LEFT, EYE_RIGHT

    lm = np.asarray(landmarks, dtype=np.float64)
    eye = lm[:, EYE_RIGHT] - lm[:, EYE_LEFT]
    dist = np.linalg.norm(eye, axis=-1).clip(1e-6)
    cos, sin = eye[:, 0] / dist, eye[:, 1] / dist  # rotate by -angle
    lips = lm[:, LIPS] - lm[:, LIPS].mean(1, keepdims=True)
    x, y = lips[..., 0], lips[..., 1]
    rot = np.stack([x * cos[:, None] + y * sin[:, None], -x * sin[:, None] + y * cos[:, None]], -1)
    return (rot / dist[:, None, None]).reshape(len(lm), -1)


def smooth_in_time(values: np.ndarray, width: int) -> np.ndarray:
    """Centred moving average of ``width`` rows (edges repeated)."""
    if width <= 1:
        return values
    pad = np.pad(values, ((width // 2, (width - 1) // 2), (0, 0)), mode="edge")
    return np.stack([pad[i:i + len(values)] for i in range(width)]).mean(0)


def readout_targets(variant: str, landmarks: np.ndarray) -> np.ndarray:
    """[N, 2 + extra] targets of ``variant`` for the training frames, standardised per column
    (columns 0 and 1 are gap and width, as the head's read-out)."""
    from ernerf_core.train.mouth_probe import mouth_shape

    cols = mouth_shape(landmarks)
    if variant.startswith("pca"):
        k = int(variant[3:])
        X = lip_coords(landmarks)
        X = X - X.mean(0)
        _, _, vt = np.linalg.svd(X, full_matrices=False)
        cols = np.concatenate([cols, X @ vt[:k].T], 1)
    elif variant == "lips40":
        cols = np.concatenate([cols, lip_coords(landmarks)], 1)
    elif variant.startswith("smooth"):
        cols = smooth_in_time(cols, int(variant[6:]))
    std = cols.std(0)
    return ((cols - cols.mean(0)) / np.where(std > 1e-9, std, 1.0)).astype(np.float32)


def run(data: Path, variant: str, seed: int, steps: int) -> dict:
    import torch
    import torch.nn.functional as F
    from torch import nn

    from ernerf_core.model.head import build_head
    from ernerf_core.train.dataset import SubjectDataset
    from ernerf_core.train.head import HEAD_DEFAULTS
    from ernerf_core.train.mouth_probe import mouth_shape

    torch.set_num_threads(1)
    train = SubjectDataset(data, "train", load_images=False, stage="readout_proxy")
    val = SubjectDataset(data, "val", features_path=train.features_path, load_images=False, stage="readout_proxy")
    targets = torch.from_numpy(readout_targets(variant, train.landmarks))
    truth = mouth_shape(val.landmarks)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    head = build_head({}, train.audio_shape, n_individual=len(train))
    readout = nn.Linear(head.config.audio_dim, targets.shape[1])
    # the head's own learning rates and decay for its audio groups (train.head defaults)
    lr = HEAD_DEFAULTS["lr_net"] * (float(variant[2:]) if variant.startswith("lr") else 1.0)
    groups = [g for g in head.param_groups(lr_net=lr) if g["name"] in AUDIO_GROUPS]
    opt = torch.optim.AdamW(groups + [{"params": readout.parameters(), "lr": lr, "weight_decay": 0.0}])
    decay = HEAD_DEFAULTS["lr_decay"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: decay ** (s / steps))
    windows = torch.stack([train.audio_window(j) for j in range(len(train))])
    val_windows = torch.stack([val.audio_window(j) for j in range(len(val))])
    scores = []
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(train), (BATCH,), generator=gen)
        loss = F.mse_loss(readout(head.encode_audio(windows[idx])), targets[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % max(1, steps // CHECKPOINTS) == 0 or step == steps:
            with torch.no_grad():
                pred = readout(head.eval().encode_audio(val_windows)).numpy()
            head.train()
            scores.append({"step": step, **{name: float(np.corrcoef(pred[:, c], truth[:, c])[0, 1])
                                            for c, name in enumerate(("gap_r", "width_r"))}})
    return {"variant": variant, "seed": seed, "targets": int(targets.shape[1]), "val_frames": len(val),
            "checkpoints": scores}


def summarize(runs: list[dict]) -> dict:
    """Per variant: mean and spread over seeds of the final gap r, its best checkpoint and width r."""
    out: dict[str, dict] = {}
    for v in dict.fromkeys(r["variant"] for r in runs):
        rs = [r for r in runs if r["variant"] == v]
        final = np.array([r["checkpoints"][-1]["gap_r"] for r in rs])
        best = np.array([max(c["gap_r"] for c in r["checkpoints"]) for r in rs])
        width = np.array([r["checkpoints"][-1]["width_r"] for r in rs])
        out[v] = {"seeds": len(rs), "gap_r": round(float(final.mean()), 3), "gap_r_sd": round(float(final.std()), 3),
                  "best_gap_r": round(float(best.mean()), 3), "width_r": round(float(width.mean()), 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="a preprocessed subject's results/<subject>/data")
    ap.add_argument("--out", type=Path, required=True, help="where readout_proxy.json goes")
    ap.add_argument("--variants", nargs="+", default=["base", "pca4", "lips40", "smooth3"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--steps", type=int, default=6500, help="read-out steps (default 6500, the anchor's head steps)")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args(argv)
    bad = [v for v in args.variants if not VARIANT.match(v)]
    if bad:
        ap.error(f"unknown variant {bad[0]!r}: base, lips40, pca<k>, smooth<k> or lr<x>")
    data = subject_data(args.data, ("transforms_train.json", "landmarks.npy"))
    if data is None:
        return 2
    jobs = [(data, v, s, args.steps) for v in args.variants for s in args.seeds]
    with ProcessPoolExecutor(args.workers) as pool:
        runs = list(pool.map(run, *zip(*jobs, strict=True)))
    table = summarize(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "readout_proxy.json"
    report = {"data": str(data), "steps": args.steps, "summary": table, "runs": runs}
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{data.parent.name}: read-out of the audio code, {args.steps} steps, {runs[0]['val_frames']} val frames")
    print(f"{'variant':<10} {'seeds':>5} {'gap r':>6} {'sd':>6} {'best':>6} {'width r':>7}")
    for v, row in table.items():
        print(f"{v:<10} {row['seeds']:>5} {row['gap_r']:>6.3f} {row['gap_r_sd']:>6.3f} {row['best_gap_r']:>6.3f} "
              f"{row['width_r']:>7.3f}")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
