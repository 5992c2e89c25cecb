"""The error map really steers sampling, is updated where rays were rendered, and stays small."""

from __future__ import annotations

import math

import pytest
import torch
from step_probe import FRAME, probe_step
from synthetic_subject import make_synthetic_subject

from ernerf_core.train.error_map import EMA_OLD, ErrorMap
from ernerf_core.train.head import HeadRun
from ernerf_core.train.sampling import PixelSampler, patch_pixels, rect_pixels, uniform_pixels

H, W = 96, 64
REGION = (slice(39, 57), slice(24, 40))  # rows, cols: 18 x 16 px = 4.7 % of the frame, whole 3x2 cells


def in_region(pixels: torch.Tensor) -> torch.Tensor:
    r, c = pixels // W, pixels % W
    return (r >= REGION[0].start) & (r < REGION[0].stop) & (c >= REGION[1].start) & (c < REGION[1].stop)


def planted_map(uniform_share: float = 0.25) -> ErrorMap:
    """A map trained by rendering every pixel three times: loss 0.5 in the region, 0.01 elsewhere."""
    emap = ErrorMap(3, H, W, cells=32, uniform_share=uniform_share)
    pixels = torch.arange(H * W)
    loss = torch.where(in_region(pixels), 0.5, 0.01)
    for _ in range(3):
        emap.update(1, pixels, loss)
    return emap


def test_sampling_draws_far_more_rays_from_a_high_error_region_than_uniform():
    emap = planted_map()
    gen = torch.Generator().manual_seed(0)
    n = 20000
    area = (18 * 16) / (H * W)
    steered = float(in_region(emap.sample_pixels(1, n, gen)).float().mean())
    uniform = float(in_region(uniform_pixels(n, H, W, gen)).float().mean())
    sigma = math.sqrt(area * (1 - area) / n)
    assert abs(uniform - area) < 5 * sigma  # uniform sampling matches the area
    # expected share: (1 - u) * region error / total error + u * area
    e_in, e_out = (EMA_OLD ** 3 + (1 - EMA_OLD ** 3) * v for v in (0.5, 0.01))
    err_share = e_in * area / (e_in * area + e_out * (1 - area))
    expected = 0.75 * err_share + 0.25 * area
    assert steered > area + 50 * sigma
    assert abs(steered - expected) < 0.03
    # the uniform share keeps every cell alive: an untouched frame samples everywhere
    fresh = emap.sample_pixels(0, n, gen)
    assert abs(float(in_region(fresh).float().mean()) - area) < 5 * sigma


def test_patch_sampling_is_steered_too():
    emap = planted_map()
    gen = torch.Generator().manual_seed(1)
    sampler = PixelSampler(H, W, num_rays=64 * 8 * 8, patch_size=8, error_map=emap)
    pixels = sampler.sample(1, gen)
    assert pixels.numel() == 64 * 64
    patches = pixels.view(64, 64)
    # patches are whole 8x8 blocks inside the image
    rows, cols = patches // W, patches % W
    assert torch.all(rows.amax(1) - rows.amin(1) == 7) and torch.all(cols.amax(1) - cols.amin(1) == 7)
    assert int(pixels.max()) < H * W
    hit = float(in_region(pixels).float().mean())
    base = PixelSampler(H, W, num_rays=64 * 8 * 8, patch_size=8).sample(1, gen)
    assert hit > 4 * float(in_region(base).float().mean()) and hit > 0.3


def test_update_is_an_ema_at_the_rendered_pixels_only():
    emap = ErrorMap(2, H, W, cells=32)
    before = emap.grid.clone()
    rect = (40, 56, 24, 40)  # the lips-rectangle path renders a whole rectangle
    pixels = rect_pixels(rect, W)
    emap.update(0, pixels, torch.full((pixels.numel(),), 0.2))
    changed = (emap.grid != before).nonzero()
    assert torch.all(changed[:, 0] == 0)
    cells_r = emap.row_cell[torch.arange(40, 56)].unique()
    cells_c = emap.col_cell[torch.arange(24, 40)].unique()
    assert set(changed[:, 1].tolist()) == set(cells_r.tolist())
    assert set(changed[:, 2].tolist()) == set(cells_c.tolist())
    value = float(emap.grid[0, cells_r[1], cells_c[1]])
    assert value == torch.tensor(EMA_OLD * 1.0 + (1 - EMA_OLD) * 0.2, dtype=torch.float16).item()
    # patches: the cells of every patch pixel are written
    patch = patch_pixels(torch.tensor([5 * W + 7]), 4, W)
    emap.update(1, patch, torch.zeros(16))
    assert float(emap.grid[1, emap.row_cell[5], emap.col_cell[7]]) == torch.tensor(EMA_OLD).half().item()


def test_compact_cpu_storage_and_checkpoint_state():
    emap = ErrorMap(6000, 512, 512, cells=64)
    assert emap.grid.dtype == torch.float16 and emap.grid.device.type == "cpu"
    assert emap.nbytes == 6000 * 64 * 64 * 2  # 49 MB for a 6,000-frame subject
    small = planted_map()
    other = ErrorMap(3, H, W, cells=32)
    other.load_state_dict(small.state_dict())
    assert torch.equal(other.grid, small.grid)


# --- the error map inside the head's training step -----------------------------------------------------


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_synthetic_subject(tmp_path_factory.mktemp("emap"), n_frames=12, size=48, feature_dim=8)


def head_run(subject, work, **extra) -> HeadRun:
    model = {"grids": {p: {"levels": 4, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 32}
                       for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32}
    settings = {"downscale": 1, "val_every": 0, "final_val_frames": 1, "checkpoint_every": 100, "num_rays": 2000,
                "iters": 10, "lips_share": 0.0, "error_map": True, "error_map_cells": 16,
                "error_map_uniform": 0.25, "model": model, **extra}
    return HeadRun(stage="train_head", subject="synth", data_dir=subject.data_dir, work_dir=work,
                   settings=settings, device="cpu")


CORNER = (slice(0, 4), slice(0, 4))  # 4 x 4 of the 16 x 16 cells: the top-left 12 x 12 px of 48 x 48


def test_the_training_step_draws_its_rays_from_the_error_map(subject, tmp_path, monkeypatch):
    """A map that says "all the error is in the top-left corner" sends the step's rays there; a step that
    sampled uniformly (no map given to the sampler, or the map ignored) draws 1/16 of them there."""
    r = head_run(subject, tmp_path)
    emap = r.error_map
    emap.grid.fill_(1e-3)
    emap.grid[FRAME, CORNER[0], CORNER[1]] = 1.0
    seen = probe_step(monkeypatch, r.step_fn, lambda R: torch.zeros(R, 3))  # noqa: N803
    r.step_fn(1)
    rows, cols = seen["pixels"] // 48, seen["pixels"] % 48
    hit = float(((rows < 12) & (cols < 12)).float().mean())
    area = 1 / 16
    e_total = 16 * 1.0 + (256 - 16) * 1e-3
    expected = 0.75 * 16 / e_total + 0.25 * area  # (1 - u) * the corner's error share + u * its area
    assert seen["pixels"].numel() == 2000
    print(f"corner share {hit:.3f}, expected {expected:.3f}, uniform {area:.3f}")
    assert hit == pytest.approx(expected, abs=0.04) and hit > 10 * area


def test_the_training_step_updates_the_map_where_it_rendered(subject, tmp_path, monkeypatch):
    """After one step, exactly the cells of the rendered pixels of the step's frame hold the EMA of the
    step's per-ray loss (a residual of 0.2 everywhere: l2 loss 0.04); nothing else moved."""
    r = head_run(subject, tmp_path, num_rays=100)  # fewer rays than cells: some cells stay untouched
    emap = r.error_map
    before = emap.grid.clone()
    assert torch.all(before == 1)  # maps start at 1
    seen = probe_step(monkeypatch, r.step_fn, lambda R: torch.full((R, 3), 0.2))  # noqa: N803
    r.step_fn(1)
    pixels = seen["pixels"]
    touched = torch.zeros(emap.gh, emap.gw, dtype=torch.bool)
    touched[emap.row_cell[pixels // 48], emap.col_cell[pixels % 48]] = True
    assert 0 < int(touched.sum()) < touched.numel()
    value = torch.tensor(EMA_OLD * 1.0 + (1 - EMA_OLD) * 0.04, dtype=torch.float16)
    assert torch.all(emap.grid[FRAME][touched] == value)
    assert torch.all(emap.grid[FRAME][~touched] == 1)
    others = [i for i in range(len(emap.grid)) if i != FRAME]
    assert torch.equal(emap.grid[others], before[others])


def test_a_short_real_run_moves_every_visited_frames_map_below_its_start(subject, tmp_path):
    """No probe: ten real steps (renderer, loss, update) leave the visited frames' maps below 1 where
    rays went, and the checkpoint carries them (resume gets the same maps)."""
    r = head_run(subject, tmp_path, iters=10, checkpoint_every=10)
    r.train()
    grid = r.error_map.grid.float()
    visited = (grid < 1).flatten(1).any(1)
    assert int(visited.sum()) >= 3
    assert float(grid[visited].min()) < 0.1  # an l2 loss of a 48 px head is far below the start value 1
    again = head_run(subject, tmp_path, iters=10, checkpoint_every=10)
    assert again.trainer.step == 10 and torch.equal(again.error_map.grid, r.error_map.grid)
