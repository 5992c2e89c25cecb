"""Input encoders: multiresolution hash grids, frequency encoding, spherical harmonics.

The hash grid reproduces torch-ngp's ``gridencoder`` (used by ER-NeRF) in pure PyTorch:
same per-level resolutions, same dense-or-hashed rule per level, same spatial hash
(primes 1, 2654435761, 805459861), same table sizes and initialisation, so a table trained
here indexes like the reference's. The hot function is :func:`hash_grid_encode`; a native
kernel with the same signature can replace it without changing callers.

Shapes: ``P`` points, ``L`` levels, ``D`` input dims, ``F`` features per level.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

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


def grid_layout(spec: HashGridSpec, dim: int) -> list[dict]:
    """Per-level constants of a grid, computed exactly as torch-ngp's GridEncoder does.

    Returns one dict per level: ``scale`` (position multiplier), ``size`` (table rows),
    ``stride`` (dense row stride = resolution + 1) and ``hashed`` (the dense index would
    overflow the level's table, so the spatial hash is used).
    """
    max_params = 2 ** spec.log2_table_size
    s = math.log2(spec.per_level_scale)
    levels = []
    for level in range(spec.levels):
        # allocation: resolution = ceil(base * scale^l); (res + 1)^D rows, capped, rounded to 8
        alloc_res = int(math.ceil(spec.base_resolution * spec.per_level_scale ** level))
        size = min(max_params, (alloc_res + 1) ** dim)
        size = int(math.ceil(size / 8) * 8)
        # kernel: scale = 2^(l*S) * H - 1; resolution = ceil(scale) + 1
        scale = math.exp2(level * s) * spec.base_resolution - 1.0
        resolution = int(math.ceil(scale)) + 1
        levels.append({"scale": scale, "size": size, "stride": resolution + 1,
                       "hashed": (resolution + 1) ** dim > size})
    return levels


class GridLevels(nn.Module):
    """The levels of one or more hash grids packed into one table, in compute order.

    Compute order puts hashed levels first, largest table first, so every hashed level
    starts at a multiple of its (power of two) size: then ``(h & mask) + offset`` equals
    ``(h & mask) | offset`` and the offset folds into the first dimension's term. Dense
    levels follow. ``output_order`` [L] maps compute order back to the caller's order.
    ``axes[i]`` names the input axes level i reads (tri-planes read two of three).
    Buffers: ``proj`` [D*L, A] f32, ``mult`` [L, D] int32, ``offset`` [L] int32, ``mask`` [L]
    int32, ``output_order`` [L] int64.
    """

    def __init__(self, levels: list[dict], dim: int, axes: list[tuple[int, ...]], n_inputs: int):
        super().__init__()
        order = sorted(range(len(levels)), key=lambda i: (not levels[i]["hashed"], -levels[i]["size"], i))
        self.n_hashed = sum(lv["hashed"] for lv in levels)
        mult, offset, mask = [], [], []
        total = 0
        for i in order:
            lv = levels[i]
            if lv["hashed"]:
                m = lv["size"] - 1
                # (g * prime) mod 2^32, masked, only depends on the prime's low bits
                mult.append([p & m for p in HASH_PRIMES[:dim]])
                mask.append(m)
            else:
                mult.append([lv["stride"] ** d for d in range(dim)])
                mask.append(-1)
            offset.append(total)
            total += lv["size"]
        self.total_rows = total
        self.dim = dim
        self.register_buffer("mult", torch.tensor(mult, dtype=torch.int32), persistent=False)
        self.register_buffer("offset", torch.tensor(offset, dtype=torch.int32), persistent=False)
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.int32), persistent=False)
        self.register_buffer("output_order", torch.argsort(torch.tensor(order)), persistent=False)
        # proj[d * L + l, a] = scale_l when level l reads input axis a as its dimension d
        proj = torch.zeros(dim, len(order), n_inputs)
        for k, i in enumerate(order):
            for d, a in enumerate(axes[i]):
                proj[d, k, a] = levels[i]["scale"]
        self.register_buffer("proj", proj.view(-1, n_inputs), persistent=False)


@torch.no_grad()
def hash_grid_indices(x: torch.Tensor, proj: torch.Tensor, mult: torch.Tensor,
                      offset: torch.Tensor, mask: torch.Tensor,
                      n_hashed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Table rows and interpolation weights of every corner at every level.

    x [P, A] in [0, 1]; proj [D*L, A] maps x to each level's scaled grid position
    (tri-planes: level l reads two of the three axes, times the level's scale); levels in
    :class:`GridLevels` compute order (the first ``n_hashed`` hashed).
    Returns (rows [C, L, P] int32, weights [C, L, P] float32), C = 2^D corners; corner c has
    bit d set when it is the upper neighbour along dimension d. The corner- and level-major
    layout keeps every elementwise op contiguous and its inner loop long on the CPU.
    """
    P = x.shape[0]
    L, D = mult.shape
    # pos[d, l, p] = scale_l * x[p, axis(l, d)] + 0.5 (float32, as the CUDA kernel)
    pos = torch.addmm(torch.full((1,), 0.5, device=x.device), proj, x.float().clamp(0.0, 1.0).t()).view(D, L, P)
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
                     n_hashed: int) -> torch.Tensor:
    """Encode points with multiresolution hash-grid levels (torch-ngp semantics, linear interp).

    x [P, A] in [0, 1]; table [T, F]; per-level constants from :class:`GridLevels`
    (``proj`` [D*L, A], ``mult`` [L, D], ``offset`` [L], ``mask`` [L]; compute order).
    Returns [L, P, F], levels in compute order. Differentiable w.r.t. ``table`` only (ER-NeRF
    never needs gradients w.r.t. positions). This is the hot function a native kernel replaces.
    """
    if x.shape[0] > ENCODE_CHUNK:  # cache-sized pieces: about 2x faster on a CPU than one big pass
        return torch.cat([hash_grid_encode(x[i:i + ENCODE_CHUNK], table, proj, mult, offset, mask, n_hashed)
                          for i in range(0, x.shape[0], ENCODE_CHUNK)], dim=1)
    rows, weights = hash_grid_indices(x, proj, mult, offset, mask, n_hashed)
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
        lv = self.levels
        out = hash_grid_encode(unit, self.table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed)  # [L, P, F]
        return out.index_select(0, lv.output_order).permute(1, 0, 2).reshape(x.shape[0], self.out_dim)


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
        lv = self.levels
        out = hash_grid_encode(unit, self.table, lv.proj, lv.mult, lv.offset, lv.mask, lv.n_hashed)  # [L, P, F]
        return out.index_select(0, lv.output_order).permute(1, 0, 2).reshape(x.shape[0], self.out_dim)


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
