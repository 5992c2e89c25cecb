"""Native kernels (cuda_ext/, ernerf_core.model.native*): parity with the pure-PyTorch
references, ERNERF_EXT selection, build failures falling back, and the CUDA sources compiling.

The CPU build happens once per machine (cached under ERNERF_EXT_CACHE or ~/.cache/ernerf/ext);
the session fixture loads it and every parity test reuses it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import warnings
from pathlib import Path

import pytest
import torch
from native_helpers import build_or_skip, rel_close

from ernerf_core.model import native, native_grid
from ernerf_core.model.encoders import (
    GridLevels,
    HashGrid,
    HashGridSpec,
    TriPlaneHashGrid,
    grid_layout,
    hash_grid_encode,
    hash_grid_encode_reference,
)
from ernerf_core.model.torso import TiledGrid2D

NVCC = Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / "bin" / "nvcc"
SRC = Path(__file__).resolve().parents[1] / "cuda_ext"


@pytest.fixture(scope="session")
def grid_cpu():
    """The CPU grid-encoder module, built (or loaded from the cache) once for the session."""
    return build_or_skip("gridencoder", "cpu")


@pytest.fixture
def ext_env(monkeypatch):
    """A clean selection state; the environment and the state are restored afterwards."""
    monkeypatch.delenv("ERNERF_EXT", raising=False)
    native.reset()
    yield monkeypatch
    native.reset()


def random_points(n: int, dim: int, seed: int) -> torch.Tensor:
    """Points in [0, 1], with some exactly on 0, 1, cell corners and a few outside (clamped)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g)
    if n >= 16:
        x[:4] = torch.tensor([0.0, 1.0, 0.5, 0.25]).view(-1, 1).expand(4, dim)
        x[4:6] = torch.tensor([-0.3, 1.7]).view(-1, 1).expand(2, dim)
    return x


def kernel_encode(module, lv: GridLevels, x, table, input_grad=False):
    return native_grid.GridEncodeFunction.apply(x.contiguous(), table, lv.proj, lv.mult, lv.offset, lv.mask,
                                                lv.modulo, lv.n_hashed, input_grad, module)


GRID_CASES = [
    # (name, specs per grid, dim, axes, n_inputs)
    ("2d dense+hashed F1", [HashGridSpec(levels=6, log2_table_size=10, base_resolution=8, finest_resolution=200)],
     2, None, 2),
    ("3d F2", [HashGridSpec(levels=4, features_per_level=2, log2_table_size=9, base_resolution=4,
                            finest_resolution=40)], 3, None, 3),
    ("3d F4 large table", [HashGridSpec(levels=5, features_per_level=4, log2_table_size=15, base_resolution=16,
                                        finest_resolution=256)], 3, None, 3),
    ("1d F2", [HashGridSpec(levels=5, features_per_level=2, log2_table_size=6, base_resolution=16,
                            finest_resolution=300)], 1, None, 1),
    ("2d modulo level (not a power of two)", [HashGridSpec(levels=3, base_resolution=16, finest_resolution=100)],
     2, None, 2),
    ("3d modulo level F2", [HashGridSpec(levels=3, features_per_level=2, log2_table_size=19, base_resolution=4,
                                         finest_resolution=25)], 3, None, 3),
    ("F3 (generic F path)", [HashGridSpec(levels=4, features_per_level=3, log2_table_size=8, base_resolution=4,
                                          finest_resolution=64)], 2, None, 2),
    ("single level", [HashGridSpec(levels=1, log2_table_size=12, base_resolution=50, finest_resolution=50)],
     2, None, 2),
    ("tri-plane, per-plane specs", [
        HashGridSpec(levels=12, log2_table_size=14, base_resolution=64, finest_resolution=512),
        HashGridSpec(levels=8, log2_table_size=12, base_resolution=16, finest_resolution=300),
        HashGridSpec(levels=5, log2_table_size=11, base_resolution=10, finest_resolution=100),
    ], 2, [(0, 1), (1, 2), (0, 2)], 3),
]


def build_levels(specs, dim, axes, n_inputs):
    levels, level_axes = [], []
    for i, spec in enumerate(specs):
        levels += grid_layout(spec, dim)
        level_axes += [axes[i] if axes else tuple(range(dim))] * spec.levels
    feats = {s.features_per_level for s in specs}
    assert len(feats) == 1
    return GridLevels(levels, dim=dim, axes=level_axes, n_inputs=n_inputs), feats.pop()


@pytest.mark.parametrize("n_points", [1, 37, 5000])
@pytest.mark.parametrize("case", GRID_CASES, ids=[c[0] for c in GRID_CASES])
def test_grid_kernel_matches_reference_forward_and_backward(grid_cpu, case, n_points):
    _, specs, dim, axes, n_inputs = case
    lv, F = build_levels(specs, dim, axes, n_inputs)
    g = torch.Generator().manual_seed(n_points)
    table = torch.randn(lv.total_rows, F, generator=g).requires_grad_()
    x = random_points(n_points, n_inputs, seed=n_points + 1)
    grad_out = torch.randn(lv.mult.shape[0], n_points, F, generator=g)

    ref = hash_grid_encode_reference(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed, lv.modulo)
    (ref_grad,) = torch.autograd.grad(ref, table, grad_out)
    out = kernel_encode(grid_cpu, lv, x, table)
    (grad,) = torch.autograd.grad(out, table, grad_out)

    assert out.shape == ref.shape == (lv.mult.shape[0], n_points, F)
    rel_close(out, ref)
    rel_close(grad, ref_grad)
    # the modules' layout: [P, L * F] in the caller's level order, written by the kernel directly
    ref_pm = ref.index_select(0, lv.output_order).permute(1, 0, 2).reshape(n_points, -1)
    grad_pm = grad_out.index_select(0, lv.output_order).permute(1, 0, 2).reshape(n_points, -1)
    out_pm = native_grid.GridEncodeFunction.apply(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.modulo,
                                                  lv.n_hashed, False, grid_cpu, lv.out_slot, True)
    (grad2,) = torch.autograd.grad(out_pm, table, grad_pm)
    rel_close(out_pm, ref_pm)
    rel_close(grad2, ref_grad)


def test_grid_kernel_refuses_a_table_too_small_for_its_levels(grid_cpu):
    """A corner row past the table's end stops forward and backward with a clear error instead
    of reading or writing outside it."""
    lv, F = build_levels(GRID_CASES[0][1], 2, None, 2)
    table = torch.randn(lv.total_rows // 2, F).requires_grad_()
    x = random_points(256, 2, seed=7)
    with pytest.raises(RuntimeError, match="outside the table"):
        kernel_encode(grid_cpu, lv, x, table)
    ok = torch.randn(lv.total_rows, F)
    grad_out = torch.ones(lv.mult.shape[0], x.shape[0], F)
    with pytest.raises(RuntimeError, match="outside the table"):
        grid_cpu.backward(grad_out, x, table.detach(), lv.proj, lv.mult, lv.offset, lv.mask, lv.modulo, lv.n_hashed,
                          torch.empty(0, dtype=torch.int32), False, True, False)
    assert torch.isfinite(kernel_encode(grid_cpu, lv, x, ok)).all()


def test_grid_kernel_chunked_reference_and_threads(grid_cpu):
    # more points than the reference's ENCODE_CHUNK, and two threads (level-parallel table gradient)
    lv, F = build_levels(GRID_CASES[-1][1], 2, GRID_CASES[-1][3], 3)
    table = torch.randn(lv.total_rows, F, generator=torch.Generator().manual_seed(0)).requires_grad_()
    x = random_points(40000, 3, seed=5)
    grad_out = torch.randn(lv.mult.shape[0], x.shape[0], F, generator=torch.Generator().manual_seed(1))
    ref = hash_grid_encode_reference(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed)
    (ref_grad,) = torch.autograd.grad(ref, table, grad_out)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        out = kernel_encode(grid_cpu, lv, x, table)
        (grad,) = torch.autograd.grad(out, table, grad_out)
    finally:
        torch.set_num_threads(threads)
    rel_close(out, ref)
    rel_close(grad, ref_grad)


@pytest.mark.parametrize("features,levels,log2,base,finest", [
    (2, 16, 16, 16, 2048),  # the torso's grid
    (1, 3, 8, 4, 64),
    (4, 5, 10, 8, 200),
])
def test_tiled_grid_kernel_matches_reference_with_position_gradients(grid_cpu, ext_env, features, levels, log2,
                                                                     base, finest):
    spec = HashGridSpec(levels=levels, features_per_level=features, log2_table_size=log2, base_resolution=base,
                        finest_resolution=finest)
    grid = TiledGrid2D(spec)
    torch.nn.init.uniform_(grid.table, -1, 1, generator=torch.Generator().manual_seed(levels))
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(3000, 2, generator=g) * 2.2 - 1.1  # some outside [-1, 1]: clamped, no gradient
    w = torch.randn(3000, grid.out_dim, generator=g)

    def run():
        x = x0.clone().requires_grad_()
        grid.table.grad = None
        out = grid(x)
        (out * w).sum().backward()
        return out.detach(), grid.table.grad.clone(), x.grad.clone()

    ext_env.setenv("ERNERF_EXT", "off")
    ref = run()
    ext_env.setenv("ERNERF_EXT", "cpu")
    native.reset()
    assert native_grid.kernel_for(grid.table) is grid_cpu
    got = run()
    for a, b in zip(got, ref, strict=True):
        rel_close(a, b)
    assert float(got[2].abs().max()) > 0  # the deformation learns through these


def test_module_forward_uses_the_kernel_unless_ext_is_off(grid_cpu, ext_env):
    planes = TriPlaneHashGrid({p: HashGridSpec(levels=4, log2_table_size=10, base_resolution=8, finest_resolution=64)
                               for p in TriPlaneHashGrid.PLANES})
    torch.nn.init.uniform_(planes.table, -1, 1)
    x = torch.rand(500, 3) * 2 - 1
    ext_env.setenv("ERNERF_EXT", "auto")
    fast = planes(x)
    assert _graph_has(fast, "GridEncodeFunction") and not _graph_has(fast, "_GatherInterpolate")
    ext_env.setenv("ERNERF_EXT", "off")
    assert native_grid.kernel_for(planes.table) is None
    slow = planes(x)
    assert _graph_has(slow, "_GatherInterpolate") and not _graph_has(slow, "GridEncodeFunction")
    rel_close(fast.detach(), slow.detach())
    ext_env.setenv("ERNERF_EXT", "cuda")  # CPU tensors: only the CUDA kernels allowed -> reference
    assert native_grid.kernel_for(planes.table) is None
    ext_env.setenv("ERNERF_EXT", "cpu")
    assert native_grid.kernel_for(planes.table) is grid_cpu
    assert native_grid.kernel_for(planes.table.double()) is None  # float32 only


def _graph_has(t: torch.Tensor, name: str) -> bool:
    seen, todo = set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        if name in type(fn).__name__:
            return True
        todo += [f for f, _ in fn.next_functions]
    return False


def test_a_broken_build_warns_once_and_falls_back(tmp_path, ext_env):
    src = tmp_path / "cuda_ext"
    shutil.copytree(SRC, src)
    for name in ("bindings.cpp", "grid_cpu.cpp"):  # only the error: gcc goes on compiling after #error
        (src / "gridencoder" / name).write_text("#error deliberately broken for the test\n")
    ext_env.setenv("ERNERF_EXT_SRC", str(src))
    ext_env.setenv("ERNERF_EXT_CACHE", str(tmp_path / "cache"))
    grid = HashGrid(HashGridSpec(levels=4, log2_table_size=8, base_resolution=4, finest_resolution=50), dim=2)
    x = torch.rand(100, 2) * 2 - 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = grid(x)
        b = grid(x)
        tiled = TiledGrid2D(HashGridSpec(levels=3, features_per_level=2, log2_table_size=8, base_resolution=4,
                                         finest_resolution=64))
        tiled(torch.rand(10, 2))
    ours = [w for w in caught if "ernerf native kernels" in str(w.message)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "build failed" in str(ours[0].message) and "pure-PyTorch" in str(ours[0].message)
    assert not _graph_has(a, "GridEncodeFunction") and torch.equal(a, b)
    lv = grid.levels
    torch.testing.assert_close(a, hash_grid_encode_reference((x + 1) / 2, grid.table, lv.proj, lv.mult, lv.offset,
                                                             lv.mask, lv.n_hashed).index_select(0, lv.output_order)
                               .permute(1, 0, 2).reshape(100, -1), rtol=0, atol=0)
    marker = list((tmp_path / "cache").glob("gridencoder_cpu_*.failed"))
    assert len(marker) == 1 and "deliberately broken" in marker[0].read_text()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]  # nothing that looks built
    # a later process does not spend the build again: one warning naming the marker
    native.reset()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        grid(x)
    ours = [str(w.message) for w in caught if "ernerf native kernels" in str(w.message)]
    assert len(ours) == 1 and "earlier build failed" in ours[0]


def test_missing_compiler_warns_once_and_falls_back(tmp_path, ext_env):
    src = tmp_path / "cuda_ext"  # sources of their own (a new hash): nothing built or imported yet
    shutil.copytree(SRC, src)
    header = src / "gridencoder" / "grid_common.h"
    header.write_text(header.read_text() + "\n// a copy\n")
    ext_env.setenv("ERNERF_EXT_SRC", str(src))
    ext_env.setenv("ERNERF_EXT_CACHE", str(tmp_path / "cache"))
    ext_env.setenv("CXX", str(tmp_path / "no-such-compiler"))
    grid = HashGrid(HashGridSpec(levels=2, log2_table_size=8, base_resolution=4, finest_resolution=8), dim=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            out = grid(torch.rand(10, 2))
    ours = [str(w.message) for w in caught if "ernerf native kernels" in str(w.message)]
    assert len(ours) == 1 and "no C++ compiler" in ours[0]
    assert out.shape == (10, 2)


def test_missing_sources_fall_back(tmp_path, ext_env):
    ext_env.setenv("ERNERF_EXT_SRC", str(tmp_path / "nowhere"))
    ext_env.setenv("ERNERF_EXT_CACHE", str(tmp_path / "cache"))
    with pytest.warns(RuntimeWarning, match="not found"):
        assert native.load("gridencoder", "cpu") is None
    assert native.load("gridencoder", "cpu") is None  # remembered, no second warning


def test_build_hash_follows_the_sources(tmp_path, ext_env):
    src = tmp_path / "cuda_ext"
    shutil.copytree(SRC, src)
    ext_env.setenv("ERNERF_EXT_SRC", str(src))
    before, _ = native.build_dir_name("gridencoder", "cpu")
    header = src / "gridencoder" / "grid_common.h"
    header.write_text(header.read_text() + "\n// edited\n")
    after, _ = native.build_dir_name("gridencoder", "cpu")
    assert before != after and before.startswith("gridencoder_cpu_")


@pytest.mark.skipif(not NVCC.exists(), reason=f"no nvcc at {NVCC}")
def test_cuda_sources_compile_for_sm80_and_sm90(tmp_path):
    """Object compile of the .cu kernels (sm_80, sm_90) and of the CUDA side of the bindings, so CUDA
    code that does not compile cannot land on a machine without a GPU."""
    env = {**os.environ, "CUDA_HOME": str(NVCC.parents[1])}
    for cu in sorted(SRC.glob("*/*.cu")):
        cmd = [str(NVCC), "-std=c++17", "-O3", "-t", "2", "-DWITH_CUDA", "-c", str(cu),
               "-o", str(tmp_path / f"{cu.stem}.o"),
               "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
        run = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, f"{cu} does not compile:\n{run.stderr[-4000:]}"
    torch_inc = Path(torch.__file__).parent / "include"
    cxx = os.environ.get("CXX", "c++")
    for cpp in sorted(SRC.glob("*/bindings.cpp")):
        cmd = [cxx, "-std=c++20", "-fsyntax-only", "-DWITH_CUDA", "-DTORCH_EXTENSION_NAME=compile_check",
               "-isystem", str(torch_inc), "-isystem", str(torch_inc / "torch" / "csrc" / "api" / "include"),
               "-isystem", str(NVCC.parents[1] / "include"), "-isystem", sysconfig.get_paths()["include"], str(cpp)]
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, f"{cpp} (WITH_CUDA) does not compile:\n{run.stderr[-4000:]}"


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")


@pytest.fixture(scope="session")
def grid_cuda():
    return build_or_skip("gridencoder", "cuda")


@needs_gpu
@pytest.mark.parametrize("case", GRID_CASES, ids=[c[0] for c in GRID_CASES])
def test_grid_cuda_kernel_matches_reference(grid_cuda, case):
    _, specs, dim, axes, n_inputs = case
    lv, F = build_levels(specs, dim, axes, n_inputs)
    lv = lv.cuda()
    g = torch.Generator().manual_seed(0)
    table = torch.randn(lv.total_rows, F, generator=g).cuda().requires_grad_()
    x = random_points(20000, n_inputs, seed=1).cuda()
    grad_out = torch.randn(lv.mult.shape[0], x.shape[0], F, generator=g).cuda()
    ref = hash_grid_encode_reference(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed, lv.modulo)
    (ref_grad,) = torch.autograd.grad(ref, table, grad_out)
    out = kernel_encode(grid_cuda, lv, x, table)
    (grad,) = torch.autograd.grad(out, table, grad_out)
    rel_close(out, ref)
    rel_close(grad, ref_grad, rel=1e-4)  # atomics add in any order


@needs_gpu
def test_tiled_grid_cuda_kernel_position_gradients(grid_cuda, ext_env):
    grid = TiledGrid2D(HashGridSpec(levels=16, features_per_level=2, log2_table_size=16, base_resolution=16,
                                    finest_resolution=2048)).cuda()
    torch.nn.init.uniform_(grid.table, -1, 1)
    x0 = (torch.rand(4000, 2) * 2 - 1).cuda()

    def run():
        x = x0.clone().requires_grad_()
        grid.table.grad = None
        grid(x).square().sum().backward()
        return grid.table.grad.clone(), x.grad.clone()

    ext_env.setenv("ERNERF_EXT", "off")
    ref = run()
    ext_env.setenv("ERNERF_EXT", "cuda")
    native.reset()
    got = run()
    for a, b in zip(got, ref, strict=True):
        rel_close(a, b, rel=1e-4)


@needs_gpu
def test_one_gpu_training_step_with_kernels(grid_cuda, ext_env):
    ext_env.setenv("ERNERF_EXT", "cuda")
    planes = TriPlaneHashGrid({p: HashGridSpec() for p in TriPlaneHashGrid.PLANES}).cuda()
    mlp = torch.nn.Sequential(torch.nn.Linear(planes.out_dim, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1)).cuda()
    opt = torch.optim.Adam(list(planes.parameters()) + list(mlp.parameters()), 1e-2)
    x = (torch.rand(8192, 3) * 2 - 1).cuda()
    target = x[:, :1].sin()
    losses = []
    for _ in range(20):
        loss = (mlp(planes(x)) - target).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert _graph_has(planes(x), "GridEncodeFunction")
    assert losses[-1] < 0.5 * losses[0]


def test_dispatch_needs_no_build_at_import():
    code = ("import sys, ernerf_core.model, ernerf_core.model.encoders as e; "
            "from ernerf_core.model import native; "
            "assert not native._imported and not any('ernerf_gridencoder' in m for m in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "ERNERF_EXT_CACHE": "/nonexistent/never-used"})
    assert run.returncode == 0, run.stderr[-2000:]


def test_hash_grid_encode_signature_dispatches(grid_cpu, ext_env):
    lv, F = build_levels(GRID_CASES[0][1], 2, None, 2)
    table = torch.randn(lv.total_rows, F)
    x = torch.rand(64, 2)
    ext_env.setenv("ERNERF_EXT", "cpu")
    a = hash_grid_encode(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed)
    ext_env.setenv("ERNERF_EXT", "off")
    b = hash_grid_encode(x, table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed)
    rel_close(a, b)


def test_training_with_and_without_kernels_learns_the_same(grid_cpu, ext_env):
    """A short fit of tri-plane grids + MLP and of the torso grid's deformation (position
    gradients) gives the same losses with the kernels and with ERNERF_EXT=off."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4096, 3, generator=g) * 2 - 1
    target = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:2]) + x[:, 2:] ** 2

    def fit(mode: str) -> list[float]:
        ext_env.setenv("ERNERF_EXT", mode)
        native.reset()
        torch.manual_seed(1)
        planes = TriPlaneHashGrid({p: HashGridSpec(levels=6, log2_table_size=10, base_resolution=8,
                                                   finest_resolution=128) for p in TriPlaneHashGrid.PLANES})
        tiled = TiledGrid2D(HashGridSpec(levels=4, features_per_level=2, log2_table_size=10, base_resolution=8,
                                         finest_resolution=128))
        torch.nn.init.uniform_(tiled.table, -0.5, 0.5)
        warp = torch.nn.Linear(3, 2)
        mlp = torch.nn.Sequential(torch.nn.Linear(planes.out_dim + tiled.out_dim, 32), torch.nn.ReLU(),
                                  torch.nn.Linear(32, 1))
        params = [planes.table, warp.weight, warp.bias] + list(mlp.parameters())
        opt = torch.optim.Adam(params, 1e-2)
        losses = []
        for _ in range(40):
            feats = torch.cat([planes(x), tiled(torch.tanh(warp(x)))], dim=-1)
            loss = (mlp(feats) - target).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        assert _graph_has(feats, "GridEncodeFunction") == (mode == "cpu")
        return losses

    fast, slow = fit("cpu"), fit("off")
    assert fast[-1] < 0.3 * fast[0]  # it learns
    for a, b in zip(fast, slow, strict=True):
        assert abs(a - b) <= 1e-3 * b, (a, b)
