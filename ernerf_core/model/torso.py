"""The torso network (ER-NeRF's adaptive pose encoding) and its 2D alpha grid.

The torso is a 2D field over image pixels, not a NeRF: for pixel coordinates ``x`` in
[-1, 1]^2 it predicts alpha and colour, conditioned on the head pose so the shoulders move
with the head.

- Pose code: three trainable anchor points (homogeneous, [3, 4]) are carried into the
  camera by the head pose and projected (x/z, y/z): 6 numbers, frequency encoded (3
  octaves -> 42 dims).
- Deformation: frequency-encoded pixel (8 octaves -> 34 dims) + pose code + the frame's
  8-dim torso individual code -> MLP (hidden 32, 3 layers) -> 2D offset. The pixel is first
  shrunk by 0.8, then offset and clamped to [-1, 1].
- Colour: a 2D multiresolution grid (16 levels x 2 features, base 16, finest 2048, table
  2^16 per level, tiled like the reference's ``tiledgrid``) at the deformed pixel + the
  encodings above -> MLP (hidden 32, 3 layers) -> alpha, RGB.
- Alpha grid: a 128^2 map of the torso's alpha refreshed every few steps (5x5 max-pool
  dilation, EMA ``max(old * 0.95, new)``); pixels whose grid alpha is below
  ``min(0.01, mean)`` are not evaluated (they are background).
- Composite: ``bg' = torso * alpha + bg * (1 - alpha)``; the head is drawn over ``bg'``.

Pixel coordinates: ``x`` runs along the width, ``y`` along the height; pixel centres map
to ``(2 i + 1) / n - 1`` (see :func:`pixel_coords`), so any resolution shares one field.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as nnF
from torch import nn

from . import native_grid
from .encoders import FrequencyEncoder, HashGridSpec, grid_layout
from .io import read_model_file, save_model_file
from .layers import linear_on_parts

# Initial anchors (homogeneous), the reference's values: a little in front of the head.
ANCHOR_INIT = ((0.01, 0.01, 0.1, 1.0), (-0.1, -0.1, 0.1, 1.0), (0.1, -0.1, 0.1, 1.0))


@dataclass
class TorsoConfig:
    """Sizes of the torso network. Defaults are ER-NeRF's."""

    grid: HashGridSpec = field(default_factory=lambda: HashGridSpec(
        levels=16, features_per_level=2, log2_table_size=16, base_resolution=16, finest_resolution=2048))
    pixel_octaves: int = 8
    pose_octaves: int = 3
    individual_dim: int = 8
    individual_num: int = 10000
    hidden: int = 32
    layers: int = 3
    shrink: float = 0.8
    alpha_grid_size: int = 128
    alpha_decay: float = 0.95
    alpha_threshold: float = 0.01

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TorsoConfig:
        d = dict(d)
        if isinstance(d.get("grid"), dict):
            d["grid"] = HashGridSpec(**d["grid"])
        return cls(**d)


def mlp(dim_in: int, dim_out: int, hidden: int, layers: int) -> nn.Sequential:
    """Bias-free ReLU MLP with ``layers`` linear layers (the reference's MLP)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        n_in, n_out = dim_in if i == 0 else hidden, dim_out if i == layers - 1 else hidden
        mods.append(nn.Linear(n_in, n_out, bias=False))
        if i < layers - 1:
            mods.append(nn.ReLU(inplace=True))
    return nn.Sequential(*mods)


def pixel_coords(height: int, width: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[H * W, 2] (x, y) of every pixel centre in [-1, 1], row-major (index = row * W + col).

    Pixel centres ((col + 0.5) / W * 2 - 1) make the field independent of the resolution:
    a torso trained at half size renders at full size on the same coordinates.
    """
    return coords_of_indices(torch.arange(height * width, device=device), height, width)


def coords_of_indices(inds: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Flat pixel indices [N] (row * W + col) -> [N, 2] (x, y) pixel centres in [-1, 1]."""
    rows = torch.div(inds, width, rounding_mode="floor").float()
    cols = (inds % width).float()
    return torch.stack([(2 * cols + 1) / width - 1, (2 * rows + 1) / height - 1], dim=-1)


class _WeightedGather(torch.autograd.Function):
    """out[n] = sum_c weights[n, c] * table[rows[n, c]]; gradients to the table and the weights.

    Forward is one fused ``embedding_bag``; the backward is written out (an ``index_add`` and
    a gather), about twice as fast on the CPU as ``embedding_bag``'s own.
    """

    @staticmethod
    def forward(ctx, table: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(table, rows, weights)
        return nnF.embedding_bag(rows, table, per_sample_weights=weights, mode="sum")  # [N, F]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        table, rows, weights = ctx.saved_tensors
        n_feat = table.shape[1]
        grad_table = grad_weights = None
        if ctx.needs_input_grad[0]:
            contrib = (weights.unsqueeze(-1) * grad.unsqueeze(1)).reshape(-1, n_feat)  # [N * 4, F]
            grad_table = torch.zeros_like(table).index_add_(0, rows.reshape(-1), contrib)
        if ctx.needs_input_grad[2]:
            vals = table.detach().index_select(0, rows.reshape(-1)).view(*rows.shape, n_feat)
            grad_weights = (vals * grad.unsqueeze(1)).sum(-1)  # [N, 4]
        return grad_table, None, grad_weights


class TiledGrid2D(nn.Module):
    """2D multiresolution grid with torch-ngp's ``tiled`` indexing (the reference torso's encoder).

    Level l has the same resolution and table size as torch-ngp (:func:`grid_layout`);
    a corner's row is its dense index ``x + y * (resolution + 1)`` modulo the level's table
    size (tiling, no spatial hash). Bilinear interpolation is written with autograd ops, so
    the output is differentiable w.r.t. the table *and* the positions: the torso's
    deformation MLP learns only through the grid's spatial gradient at the warped pixel.

    ``forward(x [P, 2] in [-1, 1]) -> [P, levels * features_per_level]`` (level-major).
    """

    def __init__(self, spec: HashGridSpec):
        super().__init__()
        self.spec = spec
        levels = grid_layout(spec, 2)
        sizes = [lv["size"] for lv in levels]
        for lv in levels:  # a tiled level's table is 2^k rows, so the modulo is a bit mask
            if lv["hashed"] and lv["size"] & (lv["size"] - 1):
                raise ValueError(f"tiled level of {lv['size']} rows is not a power of two")
        self.register_buffer("scale", torch.tensor([lv["scale"] for lv in levels]), persistent=False)
        strides = torch.tensor([lv["stride"] for lv in levels], dtype=torch.int32)  # int32: half the traffic
        # rows of the 4 corners relative to the lower-left one: (x, y), (x+1, y), (x, y+1), (x+1, y+1)
        corners = torch.stack([torch.zeros_like(strides), torch.ones_like(strides), strides, strides + 1], -1)
        self.register_buffer("stride", strides, persistent=False)  # [L]
        self.register_buffer("corners", corners, persistent=False)  # [L, 4]
        # dense levels never exceed their table: mask -1 keeps the index as it is
        masks = [lv["size"] - 1 if lv["hashed"] else -1 for lv in levels]
        self.register_buffer("mask", torch.tensor(masks, dtype=torch.int32).view(-1, 1), persistent=False)
        offsets = [sum(sizes[:k]) for k in range(len(sizes))]
        if sum(sizes) >= 2 ** 31:
            raise ValueError(f"grid table of {sum(sizes)} rows is too large")
        self.register_buffer("offset", torch.tensor(offsets, dtype=torch.int32).view(-1, 1), persistent=False)
        # the same levels as the native grid encoder's constants (cuda_ext/gridencoder: tiled = dense
        # index + mask, combined by addition, n_xor = 0); proj[d * L + l, d] = scale_l
        L = len(levels)
        proj = torch.zeros(2, L, 2)
        proj[0, :, 0] = self.scale
        proj[1, :, 1] = self.scale
        self.register_buffer("k_proj", proj.view(2 * L, 2), persistent=False)
        self.register_buffer("k_mult", torch.stack([torch.ones_like(strides), strides], -1), persistent=False)
        self.register_buffer("k_modulo", torch.zeros(L, dtype=torch.int32), persistent=False)
        self.table = nn.Parameter(torch.empty(sum(sizes), spec.features_per_level))
        nn.init.uniform_(self.table, -1e-4, 1e-4)
        self.out_dim = spec.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        unit = ((x + 1) / 2).clamp(0.0, 1.0)  # [P, 2]
        out = native_grid.try_encode(unit, self.table, self.k_proj, self.k_mult, self.offset.view(-1),
                                     self.mask.view(-1), 0, self.k_modulo, input_grad=True,
                                     point_major=True)  # [P, L * F] or None
        if out is not None:
            return out
        return self.forward_reference(unit)

    def forward_reference(self, unit: torch.Tensor) -> torch.Tensor:
        """The pure-PyTorch forward on ``unit`` [P, 2] = clamped (x + 1) / 2 (the kernel's oracle)."""
        P, L, F = unit.shape[0], self.spec.levels, self.spec.features_per_level  # noqa: N806
        pos = unit.unsqueeze(1) * self.scale.view(1, -1, 1) + 0.5  # [P, L, 2]
        cell = pos.detach().floor()
        frac = pos - cell  # carries the gradient w.r.t. x
        cell = cell.int()
        base = cell[..., 0] + cell[..., 1] * self.stride  # [P, L]
        rows = ((base.unsqueeze(-1) + self.corners) & self.mask) + self.offset  # [P, L, 4]
        wx = torch.stack([1 - frac[..., 0], frac[..., 0]], dim=-1)  # [P, L, 2]
        wy = torch.stack([1 - frac[..., 1], frac[..., 1]], dim=-1)
        weights = wy.unsqueeze(-1) * wx.unsqueeze(-2)  # [P, L, 2 (y), 2 (x)]: the corner order of rows
        # one fused gather + weighted sum per (point, level); differentiable in table and weights
        out = _WeightedGather.apply(self.table, rows.view(-1, 4), weights.reshape(-1, 4))  # [P * L, F]
        return out.view(P, L * F)


def _mlp_on_parts(net: nn.Sequential, per_point: list[torch.Tensor], per_frame: torch.Tensor) -> torch.Tensor:
    """``net(cat([*per_point, per_frame.expand(N, -1)], -1))`` without building the concatenation."""
    return net[1:](linear_on_parts(net[0].weight, per_point, per_frame))


def _sigmoid_range(h: torch.Tensor) -> torch.Tensor:
    """Sigmoid stretched to [-0.001, 1.001] so 0 and 1 are reachable (reference)."""
    return torch.sigmoid(h) * 1.002 - 0.001


class TorsoNet(nn.Module):
    """forward(coords [N, 2], pose [4, 4], index) -> alpha [N, 1], rgb [N, 3], offset [N, 2]."""

    def __init__(self, config: TorsoConfig | None = None):
        super().__init__()
        self.config = cfg = config or TorsoConfig()
        self.anchor_points = nn.Parameter(torch.tensor(ANCHOR_INIT, dtype=torch.float32))  # [3, 4]
        self.pixel_encoder = FrequencyEncoder(2, cfg.pixel_octaves)  # -> 34
        self.pose_encoder = FrequencyEncoder(6, cfg.pose_octaves)  # -> 42
        self.individual_codes = nn.Parameter(torch.randn(cfg.individual_num, cfg.individual_dim) * 0.1)
        cond = self.pixel_encoder.out_dim + self.pose_encoder.out_dim + cfg.individual_dim
        self.deform_net = mlp(cond, 2, cfg.hidden, cfg.layers)
        self.grid = TiledGrid2D(cfg.grid)
        self.color_net = mlp(self.grid.out_dim + cond, 4, cfg.hidden, cfg.layers)
        g = cfg.alpha_grid_size
        self.register_buffer("alpha_grid", torch.zeros(g, g))  # [G, G] rows = y, cols = x
        self.register_buffer("mean_alpha", torch.zeros(()))

    # ---- conditioning -------------------------------------------------------------------

    def pose_code(self, pose: torch.Tensor) -> torch.Tensor:
        """pose [4, 4] camera-to-world (head at the origin) -> [6] projected anchors."""
        cam = self.anchor_points @ torch.linalg.inv(pose).T  # [3, 4] anchors in camera space
        return (cam[:, :2] / cam[:, 3:4] / cam[:, 2:3]).reshape(-1)

    def individual_code(self, index: int | None) -> torch.Tensor:
        """The frame's code in training; code 0 for any new frame (reference test behaviour)."""
        return self.individual_codes[0 if index is None else int(index)]

    # ---- field --------------------------------------------------------------------------

    def forward(self, coords: torch.Tensor, pose: torch.Tensor,
                index: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = coords * self.config.shrink  # [N, 2]
        enc_x = self.pixel_encoder(x)  # [N, 34]
        # the pose and code part of the conditioning [pixel, pose, code] is the same at every
        # pixel: its share of each first layer is computed once per frame, not per pixel
        frame = torch.cat([self.pose_encoder(self.pose_code(pose)), self.individual_code(index)]).unsqueeze(0)
        # outputs in float32 whatever the networks ran in (autocast): the composite mixes them
        # with float32 images and grids
        offset = _mlp_on_parts(self.deform_net, [enc_x], frame).float()  # [N, 2]
        warped = (x + offset).clamp(-1.0, 1.0)
        h = _mlp_on_parts(self.color_net, [self.grid(warped), enc_x], frame).float()  # [N, 4]
        return _sigmoid_range(h[:, :1]), _sigmoid_range(h[:, 1:]), offset

    # ---- alpha grid ---------------------------------------------------------------------

    def alpha_threshold(self) -> float:
        return min(self.config.alpha_threshold, float(self.mean_alpha))

    def occupied(self, coords: torch.Tensor) -> torch.Tensor:
        """[N, 2] pixel coords -> [N] bool: may hold torso (grid alpha above threshold)."""
        grid = self.alpha_grid.view(1, 1, *self.alpha_grid.shape)
        # align_corners=False: cell (r, c) has its centre at pixel_coords(G, G)[r * G + c]
        alpha = nnF.grid_sample(grid, coords.view(1, -1, 1, 2), mode="bilinear", padding_mode="border",
                                align_corners=False).view(-1)
        return alpha > self.alpha_threshold()

    @torch.no_grad()
    def update_alpha_grid(self, pose: torch.Tensor, index: int | None = None,
                          generator: torch.Generator | None = None, chunk: int = 65536) -> None:
        """Re-query alpha at jittered cell centres for one pose, dilate 5x5, EMA-max into the grid."""
        g = self.config.alpha_grid_size
        device = self.alpha_grid.device
        centres = pixel_coords(g, g, device)  # [G*G, 2], row-major like the grid
        # drawn on the CPU (where the trainers' generators live), then moved
        jitter = torch.rand(centres.shape, generator=generator).to(device) * 2 - 1
        xy = centres + jitter / g  # anywhere inside the cell (cells are 2/G wide)
        new = torch.cat([self(part, pose, index)[0] for part in xy.split(chunk)]).view(1, 1, g, g)
        new = nnF.max_pool2d(new, kernel_size=5, stride=1, padding=2).view(g, g)
        self.alpha_grid.copy_(torch.maximum(self.alpha_grid * self.config.alpha_decay, new))
        self.mean_alpha.fill_(self.alpha_grid.mean())

    # ---- optimisation -------------------------------------------------------------------

    def param_groups(self, lr: float = 1e-2, lr_net: float = 1e-3) -> list[dict]:
        """AdamW groups as the reference: the grid at ``lr`` (decay 0.01), the rest at ``lr_net``."""
        return [
            {"name": "torso_grid", "params": list(self.grid.parameters()), "lr": lr, "weight_decay": 0.01},
            {"name": "torso_deform_net", "params": list(self.deform_net.parameters()), "lr": lr_net,
             "weight_decay": 0.0},
            {"name": "torso_color_net", "params": list(self.color_net.parameters()), "lr": lr_net,
             "weight_decay": 0.0},
            {"name": "torso_anchors", "params": [self.anchor_points], "lr": lr_net, "weight_decay": 0.0},
            {"name": "torso_codes", "params": [self.individual_codes], "lr": lr_net, "weight_decay": 0.0},
        ]

    def anchor_regulariser(self) -> torch.Tensor:
        """Keeps the anchors' homogeneous w at 1 (the reference's extra torso loss term)."""
        return ((1 - self.anchor_points[:, 3]) ** 2).mean()

    # ---- compositing --------------------------------------------------------------------

    def composite(self, coords: torch.Tensor, pose: torch.Tensor, bg: torch.Tensor,
                  index: int | None = None, use_grid: bool = True) -> dict[str, torch.Tensor]:
        """Torso over the background at coords [N, 2]; bg [N, 3].

        Returns ``rgb`` [N, 3] (= torso * alpha + bg * (1 - alpha)), ``alpha`` [N, 1] and
        ``offset`` [N, 2]. Pixels the alpha grid marks empty are skipped (alpha 0).
        """
        if not use_grid:
            alpha, color, offset = self(coords, pose, index)
        else:
            mask = self.occupied(coords)
            alpha = coords.new_zeros(coords.shape[0], 1)
            color = coords.new_zeros(coords.shape[0], 3)
            offset = coords.new_zeros(coords.shape[0], 2)
            if mask.any():
                a, c, o = self(coords[mask], pose, index)
                alpha = alpha.index_put((mask,), a)
                color = color.index_put((mask,), c)
                offset = offset.index_put((mask,), o)
        return {"rgb": color * alpha + bg * (1 - alpha), "alpha": alpha, "offset": offset}


# ---- file ---------------------------------------------------------------------------------

TORSO_FORMAT = "ernerf-torso/1"


def save_torso(path, torso: TorsoNet, meta: dict) -> None:
    """Write the torso's ``model.pt`` atomically (apply the EMA weights before calling).

    A plain dict loadable with ``weights_only=True``: ``format`` "ernerf-torso/1", ``config``
    (:meth:`TorsoConfig.as_dict`), ``state_dict`` (alpha grid included) and ``meta`` (``H``,
    ``W``, ``n_train``, ``train``: steps, settings, metrics).
    """
    save_model_file(path, TORSO_FORMAT, torso, meta)


def read_torso_file(path) -> dict:
    """The raw torso ``model.pt`` dict, with its format checked (ValueError otherwise)."""
    return read_model_file(path, TORSO_FORMAT, "torso")
