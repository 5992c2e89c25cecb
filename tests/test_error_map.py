"""The error map really steers sampling, is updated where rays were rendered, and stays small."""

from __future__ import annotations

import math

import torch

from ernerf_core.train.error_map import EMA_OLD, ErrorMap
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
