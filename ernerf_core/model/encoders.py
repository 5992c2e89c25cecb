"""Input encoders: multiresolution hash grids, frequency encoding, spherical harmonics.

The hash grid reproduces torch-ngp's ``gridencoder`` (used by ER-NeRF) in pure PyTorch:
same per-level resolutions, same dense-or-hashed rule per level, same spatial hash
(primes 1, 2654435761, 805459861), same table sizes and initialisation, so a table trained
here indexes like the reference's. The hot function is :func:`hash_grid_encode`; a native
kernel with the same signature (``cuda_ext/gridencoder``) replaces it without changing callers.

Shapes: ``P`` points, ``L`` levels, ``D`` input dims, ``F`` features per level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from . import native_grid

# torch-ngp's fast_hash primes (uint32 arithmetic).
HASH_PRIMES = (1, 2654435761, 805459861)
_U32 = 0xFFFFFFFF
ENCODE_CHUNK = 16384  # points per pass: the [corners, points, levels] temporaries stay in cache


@dataclass(frozen=True)
class HashGridSpec:
    """One multiresolution hash grid. Defaults are ER-NeRF's head planes."""

    levels: int = 12
    features_per_level: int = 1
    log2_table_size: int = 14
    base_resolution: int = 64
    finest_resolution: int = 512

    @property
    def per_level_scale(self) -> float:
        if self.levels == 1:
            return 1.0
        return math.exp2(math.log2(self.finest_resolution / self.base_resolution) / (self.levels - 1))

    @property
    def out_dim(self) -> int:
        return self.levels * self.features_per_level

    def as_dict(self) -> dict:
        return asdict(self)


def _kernel_scale(spec: HashGridSpec, level: int) -> float:
    """torch-ngp's per-level position multiplier, in the kernel's float32 arithmetic:
    ``exp2f(level * S) * H - 1.0f`` with ``S = (float) log2(per_level_scale)``."""
    s32 = np.float32(math.log2(spec.per_level_scale))
    v = np.exp2(np.float32(level) * s32) * np.float32(spec.base_resolution) - np.float32(1.0)
    return float(np.float32(v))


def grid_layout(spec: HashGridSpec, dim: int) -> list[dict]:
    """Per-level constants of a grid, computed exactly as torch-ngp's GridEncoder does.

    Returns one dict per level: ``scale`` (position multiplier), ``size`` (table rows),
    ``stride`` (dense row stride = resolution + 1), ``hashed`` (the dense index would
    overflow the level's table, so the spatial hash is used) and ``modulo`` (a hashed level
    whose table is not a power of two: its hash is reduced ``% size``, not masked).

    torch-ngp allocates a level from ``ceil(base * scale^l)`` (float64, Python side) but its
    kernel indexes with ``ceil(exp2f(l * S) * H - 1) + 1`` (float32); the two can differ by
    one (for example levels 3, base 16, finest 100: level 2 allocates 101^2 rows rounded to
    10,208 and indexes at resolution 101, so 102^2 > 10,208 and the level hashes into a
    table that is not a power of two). The kernel's rule is the one that decides, so it is
    used here for ``stride`` and ``hashed``, and such a level gets ``modulo``.
    """
    max_params = 2 ** spec.log2_table_size
    levels = []
    for level in range(spec.levels):
        # allocation: resolution = ceil(base * scale^l); (res + 1)^D rows, capped, rounded to 8
        alloc_res = int(math.ceil(spec.base_resolution * spec.per_level_scale ** level))
        size = min(max_params, (alloc_res + 1) ** dim)
        size = int(math.ceil(size / 8) * 8)
        # kernel: scale = 2^(l*S) * H - 1 (float32); resolution = ceil(scale) + 1
        scale = _kernel_scale(spec, level)
        resolution = int(math.ceil(scale)) + 1
        hashed = (resolution + 1) ** dim > size
        levels.append({"scale": scale, "size": size, "stride": resolution + 1, "hashed": hashed,
                       "modulo": hashed and bool(size & (size - 1))})
    return levels


def _int32(v: int) -> int:
    """An unsigned 32-bit value as the int32 with the same bits (int32 products wrap like uint32)."""
    v &= _U32
    return v - (1 << 32) if v >= 1 << 31 else v


class GridLevels(nn.Module):
    """The levels of one or more hash grids packed into one table, in compute order.

    Compute order puts the hashed levels with power-of-two tables first, largest table
    first, so every one of them starts at a multiple of its size: then ``(h & mask) +
    offset`` equals ``(h & mask) | offset`` and the offset folds into the first dimension's
    term. Hashed levels whose table is not a power of two (``modulo``, rare: see
    :func:`grid_layout`) follow; their full 32-bit hash is reduced ``% size`` before the
    offset is added. Dense levels come last. ``output_order`` [L] maps compute order back to
    the caller's order. ``axes[i]`` names the input axes level i reads (tri-planes read two
    of three). Buffers: ``proj`` [D*L, A] f32, ``mult`` [L, D] int32, ``offset`` [L] int32,
    ``mask`` [L] int32 (-1: none), ``modulo`` [L] int32 (0: none), ``output_order`` [L] int64.
    The first ``n_hashed`` levels combine their dimensions with xor, the others add.
    """

    def __init__(self, levels: list[dict], dim: int, axes: list[tuple[int, ...]], n_inputs: int):
        super().__init__()

        def kind(lv: dict) -> int:  # 0 hashed (power-of-two table), 1 hashed modulo, 2 dense
            return 2 if not lv["hashed"] else int(bool(lv.get("modulo")))

        order = sorted(range(len(levels)), key=lambda i: (kind(levels[i]), -levels[i]["size"], i))
        self.n_hashed = sum(lv["hashed"] for lv in levels)
        mult, offset, mask, modulo = [], [], [], []
        total = 0
        for i in order:
            lv = levels[i]
            if kind(lv) == 0:
                m = lv["size"] - 1
                # (g * prime) mod 2^32, masked, only depends on the prime's low bits
                mult.append([p & m for p in HASH_PRIMES[:dim]])
                mask.append(m)
                modulo.append(0)
            elif kind(lv) == 1:
                mult.append([_int32(p) for p in HASH_PRIMES[:dim]])  # the whole 32-bit hash is needed
                mask.append(-1)
                modulo.append(lv["size"])
            else:
                mult.append([lv["stride"] ** d for d in range(dim)])
                mask.append(-1)
                modulo.append(0)
            offset.append(total)
            total += lv["size"]
        if total >= 2 ** 31:
            raise ValueError(f"grid table of {total} rows is too large")
        self.total_rows = total
        self.dim = dim
        self.register_buffer("mult", torch.tensor(mult, dtype=torch.int32), persistent=False)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.int32), persistent=False)
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.int32), persistent=False)
        self.register_buffer("modulo", torch.tensor(modulo, dtype=torch.int32), persistent=False)
        self.has_modulo = any(modulo)
        self.register_buffer("output_order", torch.argsort(torch.tensor(order)), persistent=False)
        # out_slot[k]: where compute level k goes in the caller's order (the kernels write there directly)
        self.register_buffer("out_slot", torch.tensor(order, dtype=torch.int32), persistent=False)
        # proj[d * L + l, a] = scale_l when level l reads input axis a as its dimension d
        proj = torch.zeros(dim, len(order), n_inputs)
        for k, i in enumerate(order):
            for d, a in enumerate(axes[i]):
                proj[d, k, a] = levels[i]["scale"]
        self.register_buffer("proj", proj.view(-1, n_inputs), persistent=False)

    def encode(self, x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """x [P, A] in [0, 1] -> [P, L * F], levels in the caller's order, level-major.

        The native kernel writes this layout directly; the reference path is
        :func:`hash_grid_encode` followed by the reordering."""
        out = native_grid.try_encode(x, table, self.proj, self.mult, self.offset, self.mask, self.n_hashed,
                                     self.modulo, out_slot=self.out_slot, point_major=True)
        if out is not None:
            return out
        out = hash_grid_encode_reference(x, table, self.proj, self.mult, self.offset, self.mask, self.n_hashed,
                                         self.modulo if self.has_modulo else None)  # [L, P, F]
        return out.index_select(0, self.output_order).permute(1, 0, 2).reshape(x.shape[0], -1)


@torch.no_grad()
def hash_grid_indices(x: torch.Tensor, proj: torch.Tensor, mult: torch.Tensor,
                      offset: torch.Tensor, mask: torch.Tensor,
                      n_hashed: int, modulo: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Table rows and interpolation weights of every corner at every level.

    x [P, A] in [0, 1]; proj [D*L, A] maps x to each level's scaled grid position
    (tri-planes: level l reads two of the three axes, times the level's scale); levels in
    :class:`GridLevels` compute order (the first ``n_hashed`` hashed); ``modulo`` [L] (or
    None): levels with a non-zero entry reduce their 32-bit hash ``% modulo`` before
    ``offset`` is added (hashed tables that are not a power of two).
    Returns (rows [C, L, P] int32, weights [C, L, P] float32), C = 2^D corners; corner c has
    bit d set when it is the upper neighbour along dimension d. The corner- and level-major
    layout keeps every elementwise op contiguous and its inner loop long on the CPU.
    """
    P = x.shape[0]
    L, D = mult.shape
    # pos[d, l, p] = scale_l * x[p, axis(l, d)] + 0.5 (float32, as the kernels). The product and
    # the +0.5 are rounded apart: addmm may fuse them (BLAS on AVX-512 does), which moves points
    # near a cell edge into the next cell and away from the kernels' result.
    pos = torch.mm(proj, x.float().clamp(0.0, 1.0).t()).add_(0.5).view(D, L, P)
    cell = pos.floor()
    frac = pos - cell
    m = mult.t().unsqueeze(-1)  # [D, L, 1]
    lo = cell.to(torch.int32) * m  # dense: x*1, y*stride; hashed: x*p0, y*p1 (low bits suffice)
    hi = lo + m
    if n_hashed:
        hm = mask[:n_hashed].view(-1, 1)
        lo[:, :n_hashed] &= hm
        hi[:, :n_hashed] &= hm
    # hashed: offset is a multiple of the table size, so adding it equals or-ing it
    mod_levels = None
    if modulo is not None and bool((modulo != 0).any()):
        mod_levels = (modulo != 0).nonzero().squeeze(1)
        off = torch.where(modulo != 0, torch.zeros_like(offset), offset).view(-1, 1)  # added after the modulo
    else:
        off = offset.view(-1, 1)
    rows = torch.stack([lo[0] + off, hi[0] + off])  # [2, L, P]
    weights = torch.stack([1.0 - frac[0], frac[0]])  # [2, L, P]
    for d in range(1, D):  # the new dimension becomes the slower-varying corner bit
        t = torch.stack([lo[d], hi[d]]).unsqueeze(1)  # [2, 1, L, P]
        combined = torch.empty((2,) + tuple(rows.shape), dtype=torch.int32, device=x.device)
        torch.bitwise_xor(t[:, :, :n_hashed], rows[None, :, :n_hashed], out=combined[:, :, :n_hashed])
        torch.add(t[:, :, n_hashed:], rows[None, :, n_hashed:], out=combined[:, :, n_hashed:])
        rows = combined.flatten(0, 1)
        w = torch.stack([1.0 - frac[d], frac[d]])
        weights = (w[:, None] * weights[None]).flatten(0, 1)
    if mod_levels is not None:  # the int32 bits are the uint32 hash: reduce it as torch-ngp does
        h = rows[:, mod_levels].to(torch.int64) & _U32
        size = modulo[mod_levels].to(torch.int64).view(1, -1, 1)
        rows[:, mod_levels] = (h % size + offset[mod_levels].to(torch.int64).view(1, -1, 1)).to(torch.int32)
    return rows, weights


class _GatherInterpolate(torch.autograd.Function):
    """out[l, p, f] = sum_c w[c, l, p] * table[rows[c, l, p], f]; gradient only to the table."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        C, L, P = rows.shape
        F = table.shape[1]
        ctx.save_for_backward(rows, weights)
        ctx.table_rows = table.shape[0]
        if F == 1:
            vals = table.view(-1).index_select(0, rows.view(-1)).view(C, L, P)
            return (vals * weights).sum(0).unsqueeze(-1)  # [L, P, 1]
        vals = table.index_select(0, rows.view(-1)).view(C, L, P, F)
        return (vals * weights.unsqueeze(-1)).sum(0)  # [L, P, F]

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        rows, weights = ctx.saved_tensors
        F = grad_out.shape[-1]
        grad_table = torch.zeros(ctx.table_rows, F, dtype=grad_out.dtype, device=grad_out.device)
        if F == 1:
            contrib = weights * grad_out.squeeze(-1).unsqueeze(0)  # [C, L, P]
            grad_table.view(-1).index_add_(0, rows.view(-1), contrib.view(-1))
        else:
            contrib = weights.unsqueeze(-1) * grad_out.unsqueeze(0)  # [C, L, P, F]
            grad_table.index_add_(0, rows.view(-1), contrib.view(-1, F))
        return grad_table, None, None


def hash_grid_encode(x: torch.Tensor, table: torch.Tensor, proj: torch.Tensor,
                     mult: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                     n_hashed: int, modulo: torch.Tensor | None = None) -> torch.Tensor:
    """Encode points with multiresolution hash-grid levels (torch-ngp semantics, linear interp).

    x [P, A] in [0, 1]; table [T, F]; per-level constants from :class:`GridLevels`
    (``proj`` [D*L, A], ``mult`` [L, D], ``offset`` [L], ``mask`` [L], ``modulo`` [L] or None;
    compute order). Returns [L, P, F], levels in compute order. Differentiable w.r.t.
    ``table`` only (ER-NeRF never needs gradients w.r.t. positions here).

    Runs the native kernel (``cuda_ext/gridencoder``, :mod:`ernerf_core.model.native_grid`)
    when it is enabled and built for the tensors' device (``ERNERF_EXT``), else
    :func:`hash_grid_encode_reference`, which it matches.
    """
    out = native_grid.try_encode(x, table, proj, mult, offset, mask, n_hashed, modulo)
    if out is not None:
        return out
    return hash_grid_encode_reference(x, table, proj, mult, offset, mask, n_hashed, modulo)


def hash_grid_encode_reference(x: torch.Tensor, table: torch.Tensor, proj: torch.Tensor,
                               mult: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor,
                               n_hashed: int, modulo: torch.Tensor | None = None) -> torch.Tensor:
    """The pure-PyTorch :func:`hash_grid_encode` (any device; the native kernels' oracle)."""
    if x.shape[0] > ENCODE_CHUNK:  # cache-sized pieces: about 2x faster on a CPU than one big pass
        return torch.cat([hash_grid_encode_reference(x[i:i + ENCODE_CHUNK], table, proj, mult, offset, mask,
                                                     n_hashed, modulo)
                          for i in range(0, x.shape[0], ENCODE_CHUNK)], dim=1)
    rows, weights = hash_grid_indices(x, proj, mult, offset, mask, n_hashed, modulo)
    return _GatherInterpolate.apply(table, rows, weights)


class TriPlaneHashGrid(nn.Module):
    """Three 2D hash grids on the (x,y), (y,z), (x,z) projections, concatenated (ER-NeRF).

    The planes share one table so one gather serves all three; each plane has its own
    spec (levels, features, table size, resolutions). ``forward(x [P, 3] in [-bound, bound])
    -> [P, out_dim]``: the xy, yz, xz features in that order, each level-major.
    """

    PLANES = ("xy", "yz", "xz")
    AXES = {"xy": (0, 1), "yz": (1, 2), "xz": (0, 2)}

    def __init__(self, specs: dict[str, HashGridSpec], bound: float = 1.0):
        super().__init__()
        self.specs = {p: specs[p] for p in self.PLANES}
        self.bound = float(bound)
        feats = {s.features_per_level for s in self.specs.values()}
        if len(feats) != 1:
            raise ValueError("all planes must use the same features_per_level")
        self.features_per_level = feats.pop()
        levels, axes = [], []
        for plane in self.PLANES:
            levels += grid_layout(self.specs[plane], 2)
            axes += [self.AXES[plane]] * self.specs[plane].levels
        self.levels = GridLevels(levels, dim=2, axes=axes, n_inputs=3)
        self.table = nn.Parameter(torch.empty(self.levels.total_rows, self.features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)
        self.out_dim = sum(s.out_dim for s in self.specs.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = (x + self.bound) / (2 * self.bound)  # [P, 3] in [0, 1]
        return self.levels.encode(unit, self.table)  # [P, out_dim]


class HashGrid(nn.Module):
    """A single D-dimensional hash grid (e.g. the torso's 2D grid).

    ``forward(x [P, D] in [-bound, bound]) -> [P, levels * features_per_level]``, level-major.
    """

    def __init__(self, spec: HashGridSpec, dim: int, bound: float = 1.0):
        super().__init__()
        self.spec, self.dim, self.bound = spec, dim, float(bound)
        self.levels = GridLevels(grid_layout(spec, dim), dim=dim, axes=[tuple(range(dim))] * spec.levels,
                                 n_inputs=dim)
        self.table = nn.Parameter(torch.empty(self.levels.total_rows, spec.features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)
        self.out_dim = spec.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = (x + self.bound) / (2 * self.bound)  # [P, D] in [0, 1]
        return self.levels.encode(unit, self.table)  # [P, out_dim]


class FrequencyEncoder(nn.Module):
    """[x, sin(2^0 x), cos(2^0 x), ..., sin(2^(n-1) x), cos(2^(n-1) x)] (torch-ngp order).

    ``forward(x [..., D]) -> [..., D * (1 + 2 n)]``.
    """

    def __init__(self, input_dim: int, n_freqs: int):
        super().__init__()
        self.input_dim, self.n_freqs = input_dim, n_freqs
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.out_dim = input_dim * (1 + 2 * n_freqs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scaled = x.unsqueeze(-2) * self.freqs.view(-1, 1)  # [..., n, D]
        sincos = torch.stack([scaled.sin(), scaled.cos()], dim=-2)  # [..., n, 2, D]
        return torch.cat([x, sincos.flatten(-3)], dim=-1)


def sh_encode(d: torch.Tensor) -> torch.Tensor:
    """Real spherical harmonics of degree 4 (16 coefficients), tcnn / torch-ngp convention.

    d: [P, 3] unit directions. Returns [P, 16].
    """
    x, y, z = d.unbind(-1)
    xy, xz, yz = x * y, x * z, y * z
    x2, y2, z2 = x * x, y * y, z * z
    return torch.stack([
        torch.full_like(x, 0.28209479177387814),
        -0.48860251190291987 * y,
        0.48860251190291987 * z,
        -0.48860251190291987 * x,
        1.0925484305920792 * xy,
        -1.0925484305920792 * yz,
        0.94617469575755997 * z2 - 0.31539156525251999,
        -1.0925484305920792 * xz,
        0.54627421529603959 * x2 - 0.54627421529603959 * y2,
        0.59004358992664352 * y * (-3.0 * x2 + y2),
        2.8906114426405538 * xy * z,
        0.45704579946446572 * y * (1.0 - 5.0 * z2),
        0.3731763325901154 * z * (5.0 * z2 - 3.0),
        0.45704579946446572 * x * (1.0 - 5.0 * z2),
        1.4453057213202769 * z * (x2 - y2),
        0.59004358992664352 * x * (-x2 + 3.0 * y2),
    ], dim=-1)
