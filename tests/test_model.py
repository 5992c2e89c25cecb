"""Head model, encoders, occupancy grid and renderer (ernerf_core.model)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ernerf_core.model import build_head, load_head, nerf_matrix_to_ngp, pixel_rays, render_image, render_rays
from ernerf_core.model.audio import AudioAttNet, AudioNet, audio_window
from ernerf_core.model.encoders import (
    FrequencyEncoder,
    HashGrid,
    HashGridSpec,
    TriPlaneHashGrid,
    grid_layout,
    sh_encode,
)
from ernerf_core.model.head import HeadConfig, HeadNetwork
from ernerf_core.model.io import save_head
from ernerf_core.model.occupancy import OccupancyGrid
from ernerf_core.model.rays import near_far_from_aabb, ngp_matrix_to_nerf
from ernerf_core.model.renderer import composite_weights, default_step, march_rays


def naive_grid_encode(x01: np.ndarray, table: np.ndarray, spec: HashGridSpec, dim: int) -> np.ndarray:
    """torch-ngp gridencoder, transcribed point by point (float32 positions, uint32 hash)."""
    primes = [1, 2654435761, 805459861]
    S = np.float32(math.log2(spec.per_level_scale))  # the kernel's `const float S`
    out = np.zeros((x01.shape[0], spec.levels * spec.features_per_level), dtype=np.float64)
    offset = 0
    for level in range(spec.levels):
        # allocation (Python side, float64): ceil(base * scale^l), (res + 1)^D rows, capped, rounded to 8
        alloc = int(math.ceil(spec.base_resolution * spec.per_level_scale ** level))
        size = int(math.ceil(min(2 ** spec.log2_table_size, (alloc + 1) ** dim) / 8) * 8)
        # kernel (float32): scale = exp2f(level * S) * H - 1; resolution = ceil(scale) + 1
        scale = np.float32(np.exp2(np.float32(level) * S) * np.float32(spec.base_resolution) - np.float32(1.0))
        resolution = int(math.ceil(scale)) + 1
        for p in range(x01.shape[0]):
            pos = x01[p].astype(np.float32) * scale + np.float32(0.5)
            cell = np.floor(pos).astype(np.int64)
            frac = pos - cell
            for corner in range(2 ** dim):
                w, g = 1.0, []
                for d in range(dim):
                    bit = (corner >> d) & 1
                    w *= frac[d] if bit else 1 - frac[d]
                    g.append(int(cell[d]) + bit)
                stride, index = 1, 0
                for d in range(dim):
                    if stride > size:
                        break
                    index += g[d] * stride
                    stride *= resolution + 1
                if stride > size:
                    index = 0
                    for d in range(dim):
                        index ^= (g[d] * primes[d]) & 0xFFFFFFFF
                row = offset + index % size
                f = spec.features_per_level
                out[p, level * f:(level + 1) * f] += w * table[row]
        offset += size
    return out


def test_reference_grid_sizes():
    spec = HashGridSpec()
    assert spec.per_level_scale == pytest.approx(1.2081, abs=1e-4)
    levels = grid_layout(spec, 2)
    assert [lv["hashed"] for lv in levels] == [False] * 4 + [True] * 8
    assert sum(lv["size"] for lv in levels) == 4232 + 6248 + 9032 + 13000 + 8 * 16384
    # reference head: 3 planes x 12 levels x 1 feature, ~0.59 M parameters with DeepSpeech input
    head = build_head({}, audio_shape=(16, 29), n_individual=10000)
    assert head.encoder.out_dim == 36
    assert sum(p.numel() for p in head.parameters()) == pytest.approx(0.59e6, rel=0.01)


@pytest.mark.parametrize("spec,dim", [
    (HashGridSpec(levels=6, log2_table_size=10, base_resolution=8, finest_resolution=200), 2),
    (HashGridSpec(levels=4, features_per_level=2, log2_table_size=9, base_resolution=4, finest_resolution=40), 3),
])
def test_hash_grid_matches_torch_ngp_transcription(spec, dim):
    g = torch.Generator().manual_seed(1)
    grid = HashGrid(spec, dim=dim)
    with torch.no_grad():
        grid.table.copy_(torch.randn(grid.table.shape, generator=g))
    x = torch.rand(40, dim, generator=g) * 2 - 1
    ours = grid(x).detach().double().numpy()
    # the packed table is in compute order; rebuild the caller-order table for the transcription
    lv = grid.levels
    rows = []
    sizes = [layer["size"] for layer in grid_layout(spec, dim)]
    starts = lv.offset.tolist()
    for level in range(spec.levels):
        k = int(lv.output_order[level])
        rows.append(grid.table.detach()[starts[k]:starts[k] + sizes[level]])
    ref = naive_grid_encode(((x + 1) / 2).numpy(), torch.cat(rows).double().numpy(), spec, dim)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("spec,dim", [
    (HashGridSpec(levels=3, log2_table_size=14, base_resolution=16, finest_resolution=100), 2),
    (HashGridSpec(levels=3, features_per_level=2, log2_table_size=19, base_resolution=4, finest_resolution=25), 3),
])
def test_hash_grid_level_hashed_into_a_table_that_is_not_a_power_of_two(spec, dim):
    # torch-ngp allocates level 2 from ceil(base * scale^2) = finest (float64) but indexes it at
    # ceil(exp2f(2 S) * base - 1) + 1 = finest + 1 (float32): the dense index no longer fits the
    # table (rounded up to 8 rows, not a power of two), so torch-ngp hashes it and reduces % size.
    test_hash_grid_matches_torch_ngp_transcription(spec, dim)  # the encoding is torch-ngp's
    lay = grid_layout(spec, dim)
    top = lay[-1]
    assert top["size"] == int(math.ceil((spec.finest_resolution + 1) ** dim / 8) * 8)
    assert top["stride"] == spec.finest_resolution + 2 and top["hashed"] and top["modulo"]
    assert not any(lv["hashed"] for lv in lay[:-1])
    # every row of the modulo level is reachable: the hash is reduced % size, not masked with size - 1
    grid = HashGrid(spec, dim=dim)
    x = torch.rand(20000, dim, generator=torch.Generator().manual_seed(3)) * 2 - 1
    lv = grid.levels
    k = int(lv.output_order[spec.levels - 1])
    from ernerf_core.model.encoders import hash_grid_indices
    rows, _ = hash_grid_indices((x + 1) / 2, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed, lv.modulo)
    start = int(lv.offset[k])
    used = rows[:, k] - start
    assert int(used.min()) >= 0 and int(used.max()) < top["size"]
    assert int(used.max()) > top["size"] - 64  # a mask of size - 1 (binary 10...0111) never reaches the top rows


def test_hash_grid_gradient_is_the_interpolation_weights():
    spec = HashGridSpec(levels=5, log2_table_size=8, base_resolution=4, finest_resolution=64)
    planes = TriPlaneHashGrid({p: spec for p in TriPlaneHashGrid.PLANES})
    x = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    w = torch.randn(64, planes.out_dim, generator=torch.Generator().manual_seed(1))
    (planes(x) * w).sum().backward()
    grad = planes.table.grad.clone()
    # the output is linear in the table: finite differences along the gradient agree exactly
    with torch.no_grad():
        base = (planes(x) * w).sum()
        planes.table += 1e-3 * grad
        moved = (planes(x) * w).sum()
    assert float(moved - base) == pytest.approx(1e-3 * float((grad ** 2).sum()), rel=1e-3)


def test_sh_degree4_is_orthonormal():
    n = 200_000
    d = torch.randn(n, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    Y = sh_encode(d)
    gram = (Y.t() @ Y) * (4 * math.pi / n)  # Monte Carlo integral over the sphere
    assert Y.shape == (n, 16)
    assert torch.allclose(gram, torch.eye(16, dtype=torch.float64), atol=0.02)
    z = sh_encode(torch.tensor([[0.0, 0.0, 1.0]]))[0]
    assert z[0] == pytest.approx(0.2820948) and z[2] == pytest.approx(0.4886025) and z[6] == pytest.approx(0.6307831)


def test_frequency_encoder_layout():
    enc = FrequencyEncoder(2, 8)
    x = torch.tensor([[0.3, -0.2]])
    out = enc(x)
    assert out.shape == (1, 34) and enc.out_dim == 34
    assert torch.allclose(out[0, :2], x[0])
    assert torch.allclose(out[0, 2:4], torch.sin(x[0])) and torch.allclose(out[0, 4:6], torch.cos(x[0]))
    assert torch.allclose(out[0, -2:], torch.cos(x[0] * 128))
    assert FrequencyEncoder(6, 3).out_dim == 42


@pytest.mark.parametrize("W,C", [(16, 80), (16, 29), (2, 1024)])
def test_audio_nets_accept_every_backend_shape(W, C):
    net, att = AudioNet(C, 32), AudioAttNet(32)
    feats = torch.randn(20, C, W)
    win = audio_window(feats, 1)
    assert win.shape == (8, C, W)
    assert torch.all(win[:3] == 0) and torch.equal(win[3], feats[0]) and torch.equal(win[7], feats[4])
    assert torch.all(audio_window(feats, 19)[7] == 0)
    assert att(net(win).unsqueeze(0)).shape == (1, 32)


def test_pose_conversion_round_trip_and_camera_axes():
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = q, rng.normal(size=3)
    ngp = nerf_matrix_to_ngp(pose, scale=4.0)
    np.testing.assert_allclose(ngp_matrix_to_nerf(ngp, scale=4.0), pose, atol=1e-6)
    # the centre pixel's ray is the camera's forward axis (third column)
    c2w = torch.from_numpy(ngp)
    o, d = pixel_rays(c2w, (100.0, 100.0, 32.0, 32.0), torch.tensor([31 * 64 + 31]), 64)
    forward = c2w[:3, 2] / c2w[:3, 2].norm()
    assert torch.allclose(d[0], forward, atol=0.02) and torch.allclose(o[0], c2w[:3, 3])


def test_near_far_and_marching_stay_in_occupied_cells():
    aabb = torch.tensor([-1.0, -0.5, -1.0, 1.0, 0.5, 1.0])
    o = torch.tensor([[0.0, 3.0, 0.0], [5.0, 5.0, 5.0], [0.3, 3.0, -0.2]])
    d = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
    near, far = near_far_from_aabb(o, d, aabb)
    assert near[0] == pytest.approx(2.5) and far[0] == pytest.approx(3.5) and math.isinf(float(near[1]))
    grid = OccupancyGrid(32, aabb=aabb.tolist())
    grid.occupied.zero_()
    # occupy a slab |y| < 0.2 only
    flat = torch.arange(32 ** 3)
    centres = grid.cell_centres(flat)
    grid.occupied[centres[:, 1].abs() < 0.2] = True
    grid.update_box()  # derived lookup state follows direct edits of `occupied`
    dt = default_step(1.0, 128)
    t, valid = march_rays(o, d, near, far, grid.lookup, 16, dt, torch.full((3,), 0.5))
    assert valid.sum(1).tolist()[1] == 0 and 0 < valid.sum(1).tolist()[0] <= 16
    y = (o[:, None, 1] + t * d[:, None, 1])[valid]
    assert float(y.abs().max()) < 0.2 + grid.cell_size
    # packed to the front, increasing along each ray, inside [near, far)
    assert torch.all(valid[:, :-1] | ~valid[:, 1:])
    tv = torch.where(valid, t, torch.full_like(t, float("inf")))
    assert torch.all(tv[:, 1:][valid[:, 1:]] > tv[:, :-1][valid[:, 1:]])


def test_composite_weights_constant_density_and_early_stop():
    tau = torch.full((2, 16), 4.0 * 0.05)
    w, lit = composite_weights(tau)
    assert float(w[0].sum()) == pytest.approx(1 - math.exp(-4.0 * 0.05 * 16), rel=1e-5) and bool(lit.all())
    w, lit = composite_weights(torch.full((1, 16), 500.0))
    assert float(w[0, 0]) == pytest.approx(1.0) and torch.all(w[0, 1:] == 0)
    assert lit[0].tolist() == [True] + [False] * 15
    # groups composited one after the other equal one pass
    tau = torch.rand(3, 12)
    whole, _ = composite_weights(tau)
    first, _ = composite_weights(tau[:, :4])
    rest, _ = composite_weights(tau[:, 4:], -tau[:, :4].sum(1))
    assert torch.allclose(torch.cat([first, rest], 1), whole, atol=1e-6)


def small_head(**kw):
    spec = {"levels": 4, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 64}
    cfg = {"grids": {p: spec for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32, **kw}
    torch.manual_seed(0)
    return build_head(cfg, audio_shape=(16, 12), n_individual=4)


def test_empty_scene_renders_the_background_exactly():
    model = small_head().eval()
    model.occupancy.occupied.zero_()
    model.occupancy.update_box()
    pose = torch.from_numpy(nerf_matrix_to_ngp(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6], [0, 0, 0, 1]])))
    bg = torch.rand(12, 10, 3)
    out = render_image(model, pose, (20.0, 20.0, 5.0, 6.0), 12, 10, torch.randn(8, 12, 16), 0.3, bg)
    assert torch.equal(out["image"], bg) and torch.all(out["weights_sum"] == 0)


def dense_oracle(model, o, d, enc_a, eye, bg):
    """Every marched sample evaluated at once and composited in one pass (the reference)."""
    cfg = model.config
    dt = default_step(cfg.bound, cfg.occupancy_resolution)
    near, far = near_far_from_aabb(o, d, model.aabb, cfg.min_near)
    t, valid = march_rays(o, d, near, far, model.occupancy.lookup, cfg.max_samples, dt)
    r, k = valid.nonzero(as_tuple=True)
    f = model(o[r] + t[r, k, None] * d[r], d[r], enc_a, None, eye)
    tau = torch.zeros_like(t).index_put((r, k), f["sigma"] * dt)
    w, _ = composite_weights(tau)
    rgb = torch.zeros(*t.shape, 3).index_put((r, k), f["color"])
    ws = w.sum(1)
    return {"image": (w[..., None] * rgb).sum(1) + (1 - ws[:, None]) * bg, "weights_sum": ws,
            "depth": (w * t).sum(1)}


def test_grouped_rendering_equals_one_pass_compositing():
    model = small_head()
    with torch.no_grad():  # a dense blob: most rays saturate and stop early, some stay translucent
        model.encoder.table.normal_(0, 1)
        model.sigma_net.net[-1].weight[0].fill_(1.5)
    pose = torch.from_numpy(nerf_matrix_to_ngp(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6], [0, 0, 0, 1]])))
    pix = torch.arange(0, 400, 3)
    o, d = pixel_rays(pose, (20.0, 20.0, 10.0, 10.0), pix, 20)
    enc_a = model.encode_audio(torch.randn(8, 12, 16))
    bg = torch.rand(pix.numel(), 3)
    eye = torch.full((1, 1), 0.5)
    oracle = dense_oracle(model, o, d, enc_a, eye, bg)
    train = render_rays(model, o, d, enc_a, None, eye, bg)
    with torch.no_grad():
        infer = render_rays(model, o, d, enc_a, None, eye, bg)
    opaque = oracle["weights_sum"].detach() > 0.999
    assert 10 < opaque.sum() < opaque.numel()
    assert train["points"].shape[0] < 0.9 * march_count(model, o, d)  # opaque rays stopped early
    for key in ("image", "weights_sum", "depth"):
        assert torch.allclose(train[key].detach(), oracle[key].detach(), atol=1e-5), key
        assert torch.allclose(infer[key], oracle[key].detach(), atol=1e-5), key
    # head composited over the background: image - (1 - ws) * bg is the head alone
    head_only = train["image"] - (1 - train["weights_sum"]).unsqueeze(-1) * bg
    again = render_rays(model, o, d, enc_a, None, eye, torch.zeros(3))["image"]
    assert torch.allclose(head_only, again, atol=1e-6)
    # gradients reach the field through the grouped compositing
    train["image"].sum().backward()
    assert torch.isfinite(model.encoder.table.grad).all() and model.encoder.table.grad.abs().sum() > 0


def march_count(model, o, d) -> int:
    cfg = model.config
    near, far = near_far_from_aabb(o, d, model.aabb, cfg.min_near)
    _, valid = march_rays(o, d, near, far, model.occupancy.lookup, cfg.max_samples,
                          default_step(cfg.bound, cfg.occupancy_resolution))
    return int(valid.sum())


@pytest.mark.parametrize("resolution", [32, 64])  # 64: tested on 2x2x2 blocks
def test_occupancy_masks_unseen_cells_and_carves_background(resolution):
    grid = OccupancyGrid(resolution, aabb=[-1, -0.5, -1, 1, 0.5, 1])
    R = resolution
    pose = torch.from_numpy(nerf_matrix_to_ngp(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6], [0, 0, 0, 1]])))
    intr = (80.0, 80.0, 16.0, 16.0)
    usable = grid.mark_unseen(pose[None], intr, 32, 32)
    assert 0 < usable < R ** 3 // 4  # the AABB is about half the cube, the narrow frustum much less
    centres = grid.cell_centres(torch.arange(R ** 3))
    assert torch.all(grid.density[centres[:, 1].abs() > 0.5 + 2 * grid.cell_size] == -1)
    cam = (centres - pose[:3, 3]) @ pose[:3, :3]
    u, v = 80 * cam[:, 0] / cam[:, 2] + 16, 80 * cam[:, 1] / cam[:, 2] + 16
    in_view = (cam[:, 2] > 0) & (u >= 0) & (u < 32) & (v >= 0) & (v < 32)
    in_box = (centres[:, 1].abs() < 0.5) & (centres[:, 0].abs() < 1) & (centres[:, 2].abs() < 1)
    assert torch.all(grid.density[in_view & in_box] >= 0)  # everything a camera sees stays usable
    # a silhouette of the centre of the image: cells projecting elsewhere are carved
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[0, 12:20, 12:20] = True
    left = grid.carve(pose[None], intr, mask)
    assert 0 < left < usable
    kept = grid.density >= 0
    tol = 80 * grid.cell_size * (1 if R < 64 else 2) / 2.4  # a block's half size, in pixels
    inner = in_view & (u >= tol) & (u < 32 - tol) & (v >= tol) & (v < 32 - tol)  # blocks seen by the view
    assert float(u[kept & inner].min()) >= 12 - tol and float(u[kept & inner].max()) < 20 + tol
    on_mask = in_view & (u >= 13) & (u < 19) & (v >= 13) & (v < 19) & in_box
    assert torch.all(kept[on_mask])  # nothing the silhouette covers is carved
    # densities far above the usable mean become occupied, dilated by one cell
    grid.density[kept] = 0.1
    hot = kept.nonzero()[0]
    grid.density[hot] = 50.0
    grid.refresh()
    assert bool(grid.occupied[hot]) and 1 < int(grid.occupied.sum()) <= 27
    box = grid.occupied_box
    assert torch.all(box[3:] - box[:3] <= 3 * grid.cell_size + 1e-6)


@pytest.mark.parametrize("resolution,share", [(32, 0.01), (37, 0.0005), (16, 0.0)])
def test_occupied_box_bounds_exactly_the_occupied_cells(resolution, share):
    grid = OccupancyGrid(resolution, aabb=[-1, -0.5, -1, 1, 0.5, 1])
    grid.occupied.copy_(torch.rand(resolution ** 3, generator=torch.Generator().manual_seed(0)) < share)
    grid.update_box()
    flat = grid.occupied.nonzero().squeeze(1)
    if flat.numel() == 0:
        assert torch.all(grid.occupied_box == 0)  # an empty grid: a point
        return
    cells = grid.cell_coords(flat)
    lo = -grid.bound + cells.amin(0).float() * grid.cell_size
    hi = -grid.bound + (cells.amax(0).float() + 1) * grid.cell_size
    assert torch.equal(grid.occupied_box, torch.cat([lo, hi]))
    assert torch.equal(grid.lookup(grid.cell_centres(flat)), torch.ones(flat.numel(), dtype=torch.bool))


def test_mlp_on_parts_is_the_mlp_on_their_concatenation():
    from ernerf_core.model.head import MLP

    torch.manual_seed(0)
    mlp = MLP(20, 5, 16, 3)
    a, b = torch.randn(30, 12, requires_grad=True), torch.randn(30, 5, requires_grad=True)
    shared = torch.randn(1, 3, requires_grad=True)
    for parts, extra in (([a, b], shared), ([a, b, shared.expand(30, -1)], None)):
        got = mlp.forward_parts(parts, extra)
        ref = mlp(torch.cat([a, b, shared.expand(30, -1)], dim=-1))
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-6)
        g_got = torch.autograd.grad(got.square().sum(), [a, b, shared, mlp.net[0].weight])
        g_ref = torch.autograd.grad(ref.square().sum(), [a, b, shared, mlp.net[0].weight])
        for x, y in zip(g_got, g_ref, strict=True):
            torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)


def test_save_and_load_head_render_identically(tmp_path):
    model = small_head().eval()
    path = tmp_path / "model.pt"
    meta = {"audio": {"backend": "mel", "channels": 12, "window": 16}, "data": {"H": 8, "W": 8}}
    save_head(path, model, meta)
    loaded = load_head(path)
    assert loaded.meta == meta and loaded.config == model.config
    pose = torch.from_numpy(nerf_matrix_to_ngp(np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0.6], [0, 0, 0, 1]])))
    aud = torch.randn(8, 12, 16)
    a = render_image(model, pose, (10.0, 10.0, 4.0, 4.0), 8, 8, aud, 0.1, None)["image"]
    b = render_image(loaded, pose, (10.0, 10.0, 4.0, 4.0), 8, 8, aud, 0.1, None)["image"]
    assert torch.equal(a, b)


# --- per-plane grid settings (model.grids.xy / yz / xz) reach the network ---------------------------------

PLANE_SPECS = {  # a different grid on each plane; every per-level scale is exactly 2
    "xy": {"levels": 2, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 16},
    "yz": {"levels": 3, "log2_table_size": 12, "base_resolution": 12, "finest_resolution": 48},
    "xz": {"levels": 4, "log2_table_size": 11, "base_resolution": 16, "finest_resolution": 128},
}
PLANE_AXES = {"xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}


def level_rows(spec: dict) -> list[int]:
    """torch-ngp's table rows per level of a 2D grid: (ceil(base * 2^l) + 1)^2, capped, rounded up to 8."""
    out = []
    for level in range(spec["levels"]):
        res = spec["base_resolution"] * 2 ** level
        out.append(int(math.ceil(min(2 ** spec["log2_table_size"], (res + 1) ** 2) / 8) * 8))
    return out


def count_kinks(y: torch.Tensor) -> list[int]:
    """Per column of y [N, C] (a piecewise-linear function sampled along a line): how many kinks."""
    d2 = (y[2:] - 2 * y[1:-1] + y[:-2]).abs()
    counts = []
    for c in range(y.shape[1]):
        # kinks are a few hundred of 8,000 samples at most: the median is float32 noise
        thresh = max(1e-3 * float(d2[:, c].max()), 30 * float(d2[:, c].median()))
        hot = (d2[:, c] > thresh).nonzero().squeeze(1)
        counts.append(int(1 + (hot[1:] - hot[:-1] > 1).sum()) if hot.numel() else 0)
    return counts


def plane_features(encoder, x: torch.Tensor) -> dict[str, torch.Tensor]:
    out = encoder(x)
    parts, start = {}, 0
    for p in ("xy", "yz", "xz"):
        n = PLANE_SPECS[p]["levels"]
        parts[p], start = out[:, start:start + n], start + n
    assert start == out.shape[1]
    return parts


def test_per_plane_grid_settings_reach_the_network(tmp_path):
    """model.grids through the head stage's settings: each plane's encoder has its own levels (its share
    of the features), table size (rows) and resolutions (kinks along a line = grid lines crossed), and
    the model file keeps them."""
    from synthetic_subject import make_synthetic_subject

    from ernerf_core.train.head import HeadRun

    subj = make_synthetic_subject(tmp_path / "s", n_frames=4, size=32, feature_dim=8)
    run = HeadRun(stage="train_head", subject="s", data_dir=subj.data_dir, work_dir=tmp_path / "w",
                  settings={"iters": 1, "downscale": 1, "model": {"grids": PLANE_SPECS, "occupancy_resolution": 32}},
                  device="cpu")
    path = tmp_path / "model.pt"
    save_head(path, run.model, {"audio": {}})
    for model in (run.model, load_head(path)):
        enc = model.encoder
        for p, spec in PLANE_SPECS.items():
            assert enc.specs[p] == HashGridSpec(**spec), p
        assert enc.out_dim == sum(s["levels"] for s in PLANE_SPECS.values())
        assert enc.table.shape[0] == sum(sum(level_rows(s)) for s in PLANE_SPECS.values())
        with torch.no_grad():
            enc.table.copy_(torch.randn(enc.table.shape, generator=torch.Generator().manual_seed(0)))
        b = enc.bound
        u = torch.linspace(0.001, 0.999, 8192)
        for p, (a0, a1) in PLANE_AXES.items():
            spec = PLANE_SPECS[p]
            # along the plane's first axis: its features bend at each grid line (base * 2^l - 1 of them)
            x = torch.full((u.numel(), 3), 0.3137 * b)
            x[:, a0] = (2 * u - 1) * b
            kinks = count_kinks(plane_features(enc, x)[p].detach())
            expected = [spec["base_resolution"] * 2 ** level - 1 for level in range(spec["levels"])]
            assert all(abs(k - e) <= 2 for k, e in zip(kinks, expected, strict=True)), (p, kinks, expected)
            # along the axis the plane does not see: its features stay put
            other = ({0, 1, 2} - {a0, a1}).pop()
            x = torch.full((64, 3), 0.3137 * b)
            x[:, other] = torch.linspace(-b, b, 64)
            feats = plane_features(enc, x)[p].detach()
            assert torch.equal(feats, feats[:1].expand_as(feats)), p


# --- audio path options: attention start, feature and code standardisation -------------------------------

def test_centre_attention_start_weights_the_frame_itself():
    torch.manual_seed(0)
    codes = torch.randn(3, 8, 32)
    weights = {}
    for init in ("uniform", "centre"):
        att = AudioAttNet(32, init=init)
        y = att.attentionConvNet(codes.transpose(1, 2)).squeeze(1)
        weights[init] = torch.softmax(att.attentionNet(y), dim=1)
    assert torch.all(weights["centre"][:, 4] > 0.7)  # e^3 / (e^3 + 7) = 0.74
    assert torch.all(weights["uniform"][:, 4] < 0.3)
    with pytest.raises(ValueError, match="audio attention init"):
        AudioAttNet(32, init="middle")


def _offset_features(n=60, seed=0):
    """[n, 12, 16] features whose channels sit far from 0 and vary little from frame to frame,
    as log-mel does: a per-channel level plus a small per-frame change."""
    g = torch.Generator().manual_seed(seed)
    level = torch.linspace(-0.9, 0.6, 12).view(1, 12, 1)
    return level + 0.05 * torch.randn(n, 12, 16, generator=g)


def _code_spread(model, feats):
    """Per-channel std of the per-frame audio codes over frames, over their mean size."""
    with torch.no_grad():
        codes = model.audio_net(model._normalized_input(feats))
        if model.config.audio_code_norm:
            codes = model._normalized_codes(codes)
    return float(codes.std(0).mean() / codes.mean(0).abs().mean().clamp_min(1e-12)), codes


def test_audio_code_norm_makes_the_code_vary_with_the_frame():
    feats = _offset_features()
    plain = small_head().eval()
    normed = small_head(audio_normalize=True, audio_code_norm=True).eval()
    normed.set_audio_stats(feats)
    assert torch.allclose(normed.audio_mean.view(-1), feats.mean((0, 2)), atol=1e-5)
    spread_plain, _ = _code_spread(plain, feats)
    spread_normed, codes = _code_spread(normed, feats)
    assert spread_plain < 0.2  # the reference's code: mostly a constant
    assert spread_normed > 5  # standardised: zero mean, unit spread over the training frames
    assert torch.allclose(codes.mean(0), torch.zeros(32), atol=1e-4)
    assert torch.allclose(codes.std(0, unbiased=False), torch.ones(32), atol=1e-3)


def test_running_code_statistics_move_only_in_training_steps():
    feats = _offset_features()
    model = small_head(audio_code_norm=True)
    model.set_audio_stats(feats)
    before = model.code_mean.clone()
    shifted = audio_window(feats + 0.5, 10)
    model.eval()
    model.encode_audio(shifted)
    assert torch.equal(model.code_mean, before)  # inference leaves the statistics
    model.train()
    with torch.no_grad():
        model.encode_audio(shifted)  # the occupancy update: no gradients, no change
    assert torch.equal(model.code_mean, before)
    model.encode_audio(shifted).sum().backward()
    assert not torch.equal(model.code_mean, before)


def test_audio_standardisation_survives_save_and_load_and_old_files_still_load(tmp_path):
    feats = _offset_features()
    model = small_head(audio_normalize=True, audio_code_norm=True)
    model.set_audio_stats(feats)
    model.eval()
    meta = {"audio": {"backend": "mel", "channels": 12, "window": 16}, "data": {"H": 8, "W": 8}}
    save_head(tmp_path / "model.pt", model, meta)
    loaded = load_head(tmp_path / "model.pt")
    win = audio_window(feats, 7)
    assert torch.equal(model.encode_audio(win), loaded.encode_audio(win))
    # a model file written before these options: its config has no such keys and no buffers
    old = small_head().eval()
    cfg = old.config.as_dict()
    for key in ("audio_attention_init", "audio_normalize", "audio_code_norm"):
        cfg.pop(key)
    rebuilt = HeadNetwork(HeadConfig.from_dict(cfg))
    rebuilt.load_state_dict(old.state_dict())
    assert torch.equal(rebuilt.eval().encode_audio(win), old.encode_audio(win))
