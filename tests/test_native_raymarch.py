"""The ray marcher's native kernels (cuda_ext/raymarching) against the pure-PyTorch references:
the slab test, the occupancy march, front-to-back compositing (forward and backward), the
occupancy refresh, and a head rendered and trained with and without them.

Positions and kept samples must be the references' to the last bit (the same float32 operations);
the compositing weights within 1e-5 relative (exp's rounding). The CPU build is cached between
test sessions like the grid encoder's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from native_helpers import build_or_skip, rel_close

from ernerf_core.model import native, native_raymarch
from ernerf_core.model.head import build_head
from ernerf_core.model.occupancy import OccupancyGrid
from ernerf_core.model.rays import near_far_from_aabb, nerf_matrix_to_ngp, pixel_rays
from ernerf_core.model.renderer import composite_weights, default_step, march_rays, render_rays

AABB = torch.tensor([-1.0, -0.5, -1.0, 1.0, 0.5, 1.0])


@pytest.fixture(scope="session")
def rm_cpu():
    """The CPU ray-marcher module, built (or loaded from the cache) once for the session."""
    return build_or_skip("raymarching", "cpu")


@pytest.fixture
def ext(monkeypatch):
    """Switch ERNERF_EXT within a test: ext("off") / ext("auto"); restored afterwards."""
    def set_mode(mode: str):
        monkeypatch.setenv("ERNERF_EXT", mode)
        native.reset()

    yield set_mode
    native.reset()


def random_rays(n: int, seed: int, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Rays from a sphere of cameras around the box towards points near it, some missing it, some
    axis-parallel (zero direction components) and some starting inside it."""
    g = torch.Generator().manual_seed(seed)
    radius = 2 + 2 * torch.rand(n, 1, generator=g)
    cam = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1) * radius
    target = torch.randn(n, 3, generator=g) * 0.8
    d = torch.nn.functional.normalize(target - cam, dim=-1)
    k = n // 8
    d[:k] = torch.eye(3)[torch.arange(k) % 3] * torch.where(torch.arange(k) % 2 == 0, 1.0, -1.0)[:, None]
    cam[:k] = torch.rand(k, 3, generator=g) * 0.6 - 0.3  # inside the box, along an axis
    return cam.to(device), d.to(device)


def random_grid(resolution: int, seed: int, share: float = 0.3) -> OccupancyGrid:
    g = torch.Generator().manual_seed(seed)
    grid = OccupancyGrid(resolution, 1.0, AABB.tolist())
    density = torch.rand(resolution ** 3, generator=g) * 20
    density[torch.rand(resolution ** 3, generator=g) < 0.2] = -1.0  # unusable cells
    grid.density.copy_(density)
    grid.occupied.copy_((torch.rand(resolution ** 3, generator=g) < share) & (density >= 0))
    grid.update_box()
    return grid


@pytest.mark.parametrize("seed", [0, 1])
def test_near_far_kernel_is_the_slab_test_bit_for_bit(rm_cpu, ext, seed):
    o, d = random_rays(3000, seed)
    ext("off")
    ref = near_far_from_aabb(o, d, AABB, 0.05)
    ext("auto")
    got = near_far_from_aabb(o, d, AABB, 0.05)
    misses = torch.isinf(ref[0])
    assert 0 < int(misses.sum()) < o.shape[0]
    for a, b in zip(got, ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("resolution,K,jitter", [(16, 1, True), (32, 16, True), (64, 16, False), (37, 5, True)])
def test_march_kernel_keeps_the_references_samples(rm_cpu, ext, resolution, K, jitter):
    o, d = random_rays(4000, resolution)
    ext("off")
    near, far = near_far_from_aabb(o, d, AABB, 0.05)
    grid = random_grid(resolution, seed=K, share=0.6)
    dt = default_step(1.0, 128)  # the head's step (its occupancy grid is 128^3)
    j = torch.rand(o.shape[0], generator=torch.Generator().manual_seed(3)) if jitter else None
    t_ref, v_ref = march_rays(o, d, near, far, grid.lookup, K, dt, j)
    ext("auto")
    t, v = native_raymarch.try_march(o, d, near, far, grid, K, dt, j)
    assert v_ref.any(1).sum() > o.shape[0] // 4  # many rays keep samples
    assert bool((v_ref.sum(1) == K).any())  # and some are cut at K
    assert torch.equal(v, v_ref) and torch.equal(t, t_ref)


@pytest.mark.parametrize("G,with_log", [(1, False), (4, True), (7, True), (16, False)])
def test_composite_kernel_matches_reference_forward_and_backward(rm_cpu, ext, G, with_log):
    g = torch.Generator().manual_seed(G)
    n = 3000
    tau = torch.rand(n, G, generator=g) * torch.tensor([0.05, 1.0, 6.0])[torch.arange(n) % 3][:, None]
    tau = tau.requires_grad_()
    log_T0 = (-torch.rand(n, generator=g) * 12).requires_grad_() if with_log else None
    grad_w = torch.randn(n, G, generator=g)
    inputs = [tau] + ([log_T0] if with_log else [])

    def run(mode):
        ext(mode)
        w, lit = composite_weights(tau, log_T0)
        return (w, lit, *torch.autograd.grad(w, inputs, grad_w))

    ref, got = run("off"), run("auto")
    assert 0 < int(ref[1].sum()) < ref[1].numel() or G == 1  # some samples past the early stop
    assert torch.equal(got[1], ref[1])
    for a, b in zip(got[:1] + got[2:], ref[:1] + ref[2:], strict=True):
        rel_close(a, b)


def test_composite_kernel_is_what_the_renderer_differentiates(rm_cpu, ext):
    ext("auto")
    tau = torch.rand(8, 4, requires_grad=True)
    w, _ = composite_weights(tau)
    assert type(w.grad_fn).__name__.startswith("CompositeFunction")
    ext("off")
    w, _ = composite_weights(tau)
    assert not type(w.grad_fn).__name__.startswith("CompositeFunction")


@pytest.mark.parametrize("resolution", [8, 33, 64])
def test_refresh_kernel_thresholds_and_dilates_as_the_reference(rm_cpu, ext, resolution):
    grid = random_grid(resolution, seed=resolution)
    grid.density[grid.density > 0] *= (torch.rand(int((grid.density > 0).sum())) < 0.05).float()  # sparse peaks
    ext("off")
    grid.refresh()
    ref = grid.occupied.clone()
    ext("auto")
    grid.refresh()
    assert 0 < int(ref.sum()) < ref.numel()
    assert torch.equal(grid.occupied, ref)
    thresh = min(float(grid.mean_density), grid.density_thresh)
    assert torch.equal(native_raymarch.try_refresh(grid.density, resolution, thresh), grid.refresh_reference(thresh))


def test_kernels_off_returns_none(ext):
    ext("off")
    o, d = random_rays(4, 0)
    assert native_raymarch.try_near_far(o, d, AABB, 0.05) is None
    assert native_raymarch.try_composite(torch.rand(2, 4), None, 1e-4) is None
    assert native_raymarch.try_refresh(torch.rand(8 ** 3), 8, 1.0) is None


def small_dense_head():
    spec = {"levels": 4, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 64}
    torch.manual_seed(0)
    model = build_head({"grids": {p: spec for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32},
                       audio_shape=(16, 12), n_individual=4)
    with torch.no_grad():  # a dense blob: most rays saturate and stop early, some stay translucent
        model.encoder.table.normal_(0, 1)
        model.sigma_net.net[-1].weight[0].fill_(1.5)
    return model


def camera_rays(n_side: int = 20):
    pose = torch.from_numpy(nerf_matrix_to_ngp(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6],
                                                         [0, 0, 0, 1.0]])))
    return pixel_rays(pose, (20.0, 20.0, n_side / 2, n_side / 2), torch.arange(n_side * n_side), n_side)


def test_render_rays_with_and_without_kernels_agree(rm_cpu, ext):
    model = small_dense_head()
    o, d = camera_rays()
    enc_a = model.encode_audio(torch.randn(8, 12, 16)).detach()
    bg = torch.rand(o.shape[0], 3)
    eye = torch.full((1, 1), 0.5)
    gen_seed = 7

    def run(mode):
        ext(mode)
        model.zero_grad()
        out = render_rays(model, o, d, enc_a, None, eye, bg, perturb=True,
                          generator=torch.Generator().manual_seed(gen_seed))
        out["image"].square().sum().backward()
        return out, model.encoder.table.grad.clone(), model.sigma_net.net[0].weight.grad.clone()

    (ref, ref_gt, ref_gs), (got, got_gt, got_gs) = run("off"), run("auto")
    assert 10 < int((ref["weights_sum"] > 0.999).sum()) < o.shape[0]
    assert got["points"].shape == ref["points"].shape
    for key in ("image", "weights_sum", "depth"):
        rel_close(got[key], ref[key])
    rel_close(got_gt, ref_gt, rel=1e-4)
    rel_close(got_gs, ref_gs, rel=1e-4)


def test_head_training_with_and_without_kernels_learns_the_same(rm_cpu, ext):
    """40 steps of a small head on one view's image (occupancy updates included): the same losses
    with the kernels as with ERNERF_EXT=off."""
    o, d = camera_rays(24)
    g = torch.Generator().manual_seed(0)
    u = torch.linspace(0, 1, o.shape[0])
    target = torch.stack([u, 1 - u, 0.5 + 0.4 * torch.sin(12 * u)], dim=-1)  # smooth, learnable in 40 steps
    audio = torch.randn(8, 12, 16, generator=g)

    def fit(mode):
        ext(mode)
        torch.manual_seed(0)
        spec = {"levels": 4, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 64}
        model = build_head({"grids": {p: spec for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32},
                           audio_shape=(16, 12), n_individual=4)
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        gen = torch.Generator().manual_seed(1)
        losses = []
        for step in range(40):
            enc_a = model.encode_audio(audio)
            out = render_rays(model, o, d, enc_a, None, None, torch.zeros(3), perturb=True, generator=gen)
            loss = (out["image"] - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step % 10 == 9:
                code = enc_a.detach()
                model.occupancy.update(lambda x, code=code: model.density(x, code, None), generator=gen)
            losses.append(float(loss.detach()))
        return losses, model.occupancy.occupied.clone()

    (fast, occ_fast), (slow, occ_slow) = fit("auto"), fit("off")
    assert fast[-1] < 0.8 * fast[0], fast  # it learns
    for a, b in zip(fast, slow, strict=True):
        assert abs(a - b) <= 1e-3 * b, (a, b)
    assert (occ_fast != occ_slow).float().mean() < 1e-3


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


@pytest.fixture(scope="session")
def rm_cuda():
    return build_or_skip("raymarching", "cuda")


@needs_gpu
def test_cuda_kernels_match_the_references(rm_cuda, ext):
    o, d = random_rays(4000, 5)
    grid = random_grid(32, seed=2)
    dt = default_step(1.0, 32)
    j = torch.rand(o.shape[0])
    ext("off")
    near, far = near_far_from_aabb(o, d, AABB, 0.05)
    t_ref, v_ref = march_rays(o, d, near, far, grid.lookup, 16, dt, j)
    tau = torch.rand(3000, 4) * 3
    log_T0 = -torch.rand(3000) * 8
    w_ref, lit_ref = composite_weights(tau, log_T0)
    thresh = 5.0
    occ_ref = grid.refresh_reference(thresh)
    ext("cuda")
    cu = torch.device("cuda")
    near_c, far_c = near_far_from_aabb(o.to(cu), d.to(cu), AABB.to(cu), 0.05)
    assert torch.equal(near_c.cpu(), near) and torch.equal(far_c.cpu(), far)
    grid = grid.to(cu)
    t, v = native_raymarch.try_march(o.to(cu), d.to(cu), near.to(cu), far.to(cu), grid, 16, dt, j.to(cu))
    assert torch.equal(v.cpu(), v_ref) and torch.equal(t.cpu(), t_ref)
    tau_c = tau.to(cu).requires_grad_()
    w, lit = composite_weights(tau_c, log_T0.to(cu))
    rel_close(w.cpu(), w_ref, rel=1e-4)  # --use_fast_math exp
    assert (lit.cpu() != lit_ref).float().mean() < 1e-3
    assert torch.equal(native_raymarch.try_refresh(grid.density, 32, thresh).cpu(), occ_ref)
    assert math.isfinite(float(torch.autograd.grad(w.sum(), tau_c)[0].sum()))
