"""Head training speed on this CPU: steps/s and rays/s, against a plain baseline.

- ``head step, demo config``: the ``train.head`` defaults (4,096 rays, error map, carved
  occupancy grid) on a synthetic 256x256 subject, after 60 warm-up steps so the occupancy
  grid has pruned empty space as it does in a real run.
- ``head step, reference renderer settings``: the same 4,096 rays with the reference's
  renderer choices (no carving, whole-grid occupancy refresh every 16 steps).
- ``baseline``: DESIGN.md's calibration model in the same process: a plain PyTorch
  tri-plane hash grid at the reference sizes (per-level loop, int64 indices) + 2-layer MLP,
  4,096 rays x 24 uniform samples, no occupancy grid.
- ``hash_grid_encode``: forward + backward for 65,536 points (36 levels) vs the baseline's
  per-level encoder.

Everything runs on one torch thread, as CPU training does (see ernerf_core.train.head).
Ratios are baseline seconds / our seconds (> 1 = faster than the baseline).
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

RAYS = 4096


class PlainTriPlane(nn.Module):
    """The calibration baseline: one table per level, per-level Python loop, int64 hash."""

    def __init__(self, levels: int = 12, log2_size: int = 14, base: int = 64, finest: int = 512):
        super().__init__()
        scale = math.exp2(math.log2(finest / base) / (levels - 1))
        self.res = [int(math.ceil(base * scale ** lv)) for lv in range(levels)]
        self.size = 2 ** log2_size
        self.tables = nn.ParameterList(nn.Parameter(torch.empty(3 * self.size).uniform_(-1e-4, 1e-4))
                                       for _ in self.res)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = (x + 1) / 2
        planes = [u[:, [0, 1]], u[:, [1, 2]], u[:, [0, 2]]]
        feats = []
        for p, coords in enumerate(planes):
            for lv, res in enumerate(self.res):
                pos = coords * res
                cell = pos.floor().long()
                f = pos - cell
                out = 0
                for dx in (0, 1):
                    for dy in (0, 1):
                        gx, gy = cell[:, 0] + dx, cell[:, 1] + dy
                        idx = ((gx * 1) ^ (gy * 2654435761)) % self.size + p * self.size
                        w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
                        out = out + w * self.tables[lv][idx]
                feats.append(out)
        return torch.stack(feats, dim=-1)


def baseline_step(enc, mlp, opt, gen) -> None:
    o = torch.tensor([0.0, 2.4, 0.0]).expand(RAYS, 3)
    d = F.normalize(torch.randn(RAYS, 3, generator=gen) * torch.tensor([0.2, 0.0, 0.2]) +
                    torch.tensor([0.0, -1.0, 0.0]), dim=-1)
    t = 1.9 + (torch.arange(24) + torch.rand(RAYS, 24, generator=gen)) / 24  # [R, 24] in the head box
    xyz = (o[:, None] + t[..., None] * d[:, None]).reshape(-1, 3)
    h = mlp(enc(xyz)).view(RAYS, 24, 4)
    sigma, rgb = F.softplus(h[..., 0]), torch.sigmoid(h[..., 1:])
    tau = sigma / 24
    w = (1 - torch.exp(-tau)) * torch.exp(-(tau.cumsum(1) - tau))
    img = (w[..., None] * rgb).sum(1)
    loss = ((img - 0.5) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


def time_steps(fn, n: int, warm: int = 2) -> float:
    for _ in range(warm):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def bench_baseline() -> float:
    torch.manual_seed(0)
    enc = PlainTriPlane()
    mlp = nn.Sequential(nn.Linear(36, 64), nn.ReLU(), nn.Linear(64, 4))
    opt = torch.optim.Adam(list(enc.parameters()) + list(mlp.parameters()), 1e-2)
    gen = torch.Generator().manual_seed(0)
    return time_steps(lambda: baseline_step(enc, mlp, opt, gen), 5)


def bench_head(tmp: Path, settings: dict, warm_steps: int = 60, n: int = 15) -> tuple[float, float]:
    """Seconds per step and mean samples per step after ``warm_steps`` of training."""
    from ernerf_core.train.head import HeadRun
    from tests.synthetic_subject import make_synthetic_subject

    subject_dir = tmp / "subject"
    if not subject_dir.exists():
        make_synthetic_subject(subject_dir, n_frames=12, size=256, feature_dim=80)
    work = tmp / f"run{len(list(tmp.iterdir()))}"
    run = HeadRun(stage="train_head", subject="bench", data_dir=subject_dir / "data", work_dir=work,
                  settings={"downscale": 1, "val_every": 0, "checkpoint_every": 10 ** 6, "num_rays": RAYS,
                            "iters": warm_steps + n, **settings}, device="cpu")
    trainer = run.trainer
    marks = {}

    def mark(step):
        if step in (warm_steps, warm_steps + n):
            marks[step] = (time.perf_counter(), trainer.last_logs.get("samples", 0.0))

    trainer.log_every = n
    run.train(on_step_end=mark)
    (t0, _), (t1, samples) = marks[warm_steps], marks[warm_steps + n]
    return (t1 - t0) / n, samples


def bench_encoder() -> tuple[float, float]:
    from ernerf_core.model.encoders import HashGridSpec, TriPlaneHashGrid

    torch.manual_seed(0)
    x = torch.rand(65536, 3) * 2 - 1
    ours = TriPlaneHashGrid({p: HashGridSpec() for p in TriPlaneHashGrid.PLANES})
    plain = PlainTriPlane()

    def run(enc):
        enc.zero_grad()
        enc(x).sum().backward()

    return time_steps(lambda: run(ours), 5), time_steps(lambda: run(plain), 3)


def run() -> list[dict]:
    torch.set_num_threads(1)
    rows = []
    base = bench_baseline()
    rows.append({"name": "baseline: plain tri-plane hash grid + 2-layer MLP, 4096 rays x 24 samples",
                 "seconds_per_step": round(base, 4), "steps_per_s": round(1 / base, 2),
                 "rays_per_s": round(RAYS / base), "ratio": 1.0})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, settings in (
            ("head step, demo config (train.head defaults)", {}),
            ("head step, reference renderer settings (no carving, full occupancy refresh)",
             {"carve": False, "occupancy_update_fraction": 1.0}),
        ):
            sec, samples = bench_head(tmp, settings)
            rows.append({"name": f"{name}, {RAYS} rays/step", "seconds_per_step": round(sec, 4),
                         "steps_per_s": round(1 / sec, 2), "rays_per_s": round(RAYS / sec),
                         "samples_per_step": round(samples), "baseline": "plain model step",
                         "ratio": round(base / sec, 2)})
    ours, plain = bench_encoder()
    rows.append({"name": "hash_grid_encode fwd+bwd, 65536 points x 36 levels", "seconds": round(ours, 4),
                 "baseline": "per-level plain encoder", "baseline_seconds": round(plain, 4),
                 "ratio": round(plain / ours, 2)})
    return rows


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
