"""Native kernels (cuda_ext/) against the pure-PyTorch path (``ERNERF_EXT=off``), side by side.

Rows (each ratio = off seconds / kernel seconds, both measured in this process, alternating):

- ``build``: a cold build of the CPU grid encoder into a temporary cache (what a fresh machine
  pays once), then the load of the cached build.
- ``tri-plane encode fwd+bwd``: ER-NeRF's head planes (3 x 12 levels, 2^14 rows) on 65,536 points,
  one thread, best of several runs in thread time (so other processes on the machine do not count).
- ``head step``: the ``train.head`` defaults at 4,096 rays on one thread
  (:func:`benchmarks.bench_train.bench_head`, after its warm-up steps).
- ``march``: the slab test and the occupancy march of every ray of a 256 px frame of the trained
  head (``rays.near_far_from_aabb`` + ``renderer.march_rays``), one thread, best thread time.
- ``occupancy refresh``: threshold + 3^3 dilation of a 128^3 grid (``OccupancyGrid.refresh``),
  one thread.
- ``portrait render``: head + torso frames at 256 px (and 512 px) on 2 threads, as
  :mod:`benchmarks.bench_render` renders them.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import torch


@contextmanager
def ext_mode(mode: str):
    from ernerf_core.model import native

    old = os.environ.get("ERNERF_EXT")
    os.environ["ERNERF_EXT"] = mode
    native.reset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("ERNERF_EXT", None)
        else:
            os.environ["ERNERF_EXT"] = old
        native.reset()


def bench_build() -> dict:
    from ernerf_core.model import native

    with tempfile.TemporaryDirectory(prefix="bench-ext-") as tmp:
        old = os.environ.get("ERNERF_EXT_CACHE")
        os.environ["ERNERF_EXT_CACHE"] = tmp
        saved = dict(native._imported)
        native._imported.clear()  # build as a fresh process would
        try:
            start = time.perf_counter()
            native.build("gridencoder", "cpu")
            cold = time.perf_counter() - start
        finally:
            native._imported.clear()
            native._imported.update(saved)
            if old is None:
                os.environ.pop("ERNERF_EXT_CACHE", None)
            else:
                os.environ["ERNERF_EXT_CACHE"] = old
    return {"name": "build gridencoder (cpu), cold, into an empty cache", "seconds": round(cold, 1),
            "threads_available": os.cpu_count()}


def bench_encode() -> dict:
    from ernerf_core.model.encoders import HashGridSpec, TriPlaneHashGrid

    torch.manual_seed(0)
    enc = TriPlaneHashGrid({p: HashGridSpec() for p in TriPlaneHashGrid.PLANES})
    x = torch.rand(65536, 3) * 2 - 1

    def step():
        enc.zero_grad()
        enc(x).sum().backward()

    best = _best_thread_time(step)
    return {"name": "tri-plane encode fwd+bwd, 65536 points x 36 levels, 1 thread",
            "seconds": round(best["cpu"], 4), "baseline": "ERNERF_EXT=off (pure PyTorch)",
            "baseline_seconds": round(best["off"], 4), "ratio": round(best["off"] / best["cpu"], 2)}


def bench_head_step(rounds: int = 2) -> dict:
    from benchmarks.bench_train import RAYS, bench_head

    with tempfile.TemporaryDirectory(prefix="bench-kernels-") as tmp:
        tmp = Path(tmp)
        sec = {"off": float("inf"), "cpu": float("inf")}
        for _ in range(rounds):
            for mode in sec:
                with ext_mode(mode):
                    sec[mode] = min(sec[mode], bench_head(tmp, {})[0])
    return {"name": f"head training step, train.head defaults, {RAYS} rays, 1 thread",
            "seconds_per_step": round(sec["cpu"], 4), "baseline": "ERNERF_EXT=off",
            "baseline_seconds_per_step": round(sec["off"], 4), "ratio": round(sec["off"] / sec["cpu"], 2)}


def _best_thread_time(fn, repeats: int = 5, rounds: int = 3) -> dict:
    """Best thread time of ``fn`` with the kernels (``cpu``) and with ``off``, alternating."""
    best = {"cpu": float("inf"), "off": float("inf")}
    for _ in range(rounds):
        for mode in best:
            with ext_mode(mode):
                fn()  # warm-up (and the kernel's load)
                for _ in range(repeats):
                    start = time.thread_time()
                    fn()
                    best[mode] = min(best[mode], time.thread_time() - start)
    return best


def bench_march(portrait, size: int = 256) -> dict:
    from ernerf_core.model.native_raymarch import try_march
    from ernerf_core.model.rays import near_far_from_aabb, pixel_rays
    from ernerf_core.model.renderer import default_step, march_rays

    head = portrait.head
    cfg = head.config
    _, W0 = portrait.size  # square frames: one scale
    fx, fy, cx, cy = portrait.intrinsics
    s = size / W0
    o, d = pixel_rays(portrait.poses[0], (fx * s, fy * s, cx * s, cy * s), torch.arange(size * size), size)
    dt = default_step(cfg.bound, cfg.occupancy_resolution)
    jitter = torch.rand(o.shape[0])

    def step():
        near, far = near_far_from_aabb(o, d, head.aabb, cfg.min_near)
        if try_march(o, d, near, far, head.occupancy, cfg.max_samples, dt, jitter) is None:
            march_rays(o, d, near, far, head.occupancy.lookup, cfg.max_samples, dt, jitter)

    best = _best_thread_time(step)
    return {"name": f"near/far + occupancy march, {size}x{size} rays of the trained head, 1 thread",
            "seconds": round(best["cpu"], 4), "baseline": "ERNERF_EXT=off",
            "baseline_seconds": round(best["off"], 4), "ratio": round(best["off"] / best["cpu"], 2)}


def bench_refresh(resolution: int = 128) -> dict:
    from ernerf_core.model.occupancy import OccupancyGrid

    grid = OccupancyGrid(resolution)
    g = torch.Generator().manual_seed(0)
    grid.density.copy_(torch.rand(resolution ** 3, generator=g) ** 8 * 40)
    best = _best_thread_time(grid.refresh, repeats=3)
    return {"name": f"occupancy refresh (threshold + 3^3 dilation), {resolution}^3 cells, 1 thread",
            "seconds": round(best["cpu"], 4), "baseline": "ERNERF_EXT=off",
            "baseline_seconds": round(best["off"], 4), "ratio": round(best["off"] / best["cpu"], 2)}


def bench_portrait(portrait, sizes=((256, 6), (512, 2)), threads: int = 2, rounds: int = 2) -> list[dict]:
    from benchmarks.bench_render import _fps

    rows = []
    for size, n in sizes:
        fps = {"off": 0.0, "cpu": 0.0}
        for _ in range(rounds):  # alternating, best of each: other load on the machine counts less
            for mode in fps:
                with ext_mode(mode):
                    fps[mode] = max(fps[mode], _fps(portrait, size, n, True))
        rows.append({"name": f"portrait render head+torso {size}x{size}, {threads} threads",
                     "fps": round(fps["cpu"], 3), "baseline": "ERNERF_EXT=off",
                     "baseline_fps": round(fps["off"], 3), "ratio": round(fps["cpu"] / fps["off"], 2)})
    return rows


def run() -> list[dict]:
    from benchmarks.bench_render import _portrait

    threads = torch.get_num_threads()
    rows = [bench_build()]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-kernels-render-") as tmp:
            portrait, _ = _portrait(Path(tmp))
            torch.set_num_threads(1)
            rows.append(bench_encode())
            rows.append(bench_march(portrait))
            rows.append(bench_refresh())
            rows.append(bench_head_step())
            torch.set_num_threads(min(2, os.cpu_count() or 1))
            rows += bench_portrait(portrait, threads=torch.get_num_threads())
    finally:
        torch.set_num_threads(threads)
    return rows


if __name__ == "__main__":
    import json

    for row in run():
        print(json.dumps(row))
