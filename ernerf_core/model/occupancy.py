"""Occupancy grid of the head: which cells of the scene can hold density (ERNERF_FACTS.md s4).

A ``resolution^3`` grid over ``[-bound, bound]^3`` (one cascade, bound 1). Cells no training
camera sees, and cells outside the training AABB, are marked unusable (-1) once. Every
``update`` re-queries density at jittered cell centres (with one random training audio
code and eye value), keeps ``max(old * decay, new)``, and marks a cell occupied when its
density exceeds ``min(mean density, density_thresh)``, dilated by one cell (the
reference's less aggressive culling). Ray marching only samples occupied cells.

Two deliberate differences: the mean is taken over usable cells (the reference's mean
over its whole cube depends on how much empty box surrounds the head), and
:meth:`OccupancyGrid.carve` can remove, before training, cells that the training views
show as background (space carving with dilated head silhouettes), which the reference
leaves to thousands of GPU steps of density decay.

Cell (ix, iy, iz) has flat index ``(ix * R + iy) * R + iz`` (plain row-major; the CUDA
reference uses Morton order, which only changes the storage order).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .native_raymarch import try_refresh


class OccupancyGrid(nn.Module):
    """Buffers (saved with the model): ``density`` [R^3] f32 (-1 = unusable), ``occupied``
    [R^3] bool, ``mean_density`` scalar."""

    def __init__(self, resolution: int = 128, bound: float = 1.0, aabb=None, density_thresh: float = 10.0):
        super().__init__()
        self.resolution, self.bound, self.density_thresh = int(resolution), float(bound), float(density_thresh)
        b = self.bound
        self.aabb = list(aabb) if aabb is not None else [-b, -b, -b, b, b, b]
        n = self.resolution ** 3
        self.register_buffer("density", torch.zeros(n))
        self.register_buffer("occupied", torch.ones(n, dtype=torch.bool))
        self.register_buffer("mean_density", torch.zeros(()))
        # box around the occupied cells [6] (xmin, ymin, zmin, xmax, ymax, zmax): rays that miss
        # it need no marching at all. Derived from ``occupied``, so not saved but recomputed on load.
        self.register_buffer("occupied_box", torch.tensor(self.aabb, dtype=torch.float32), persistent=False)
        self.register_buffer("_padded", torch.zeros((self.resolution + 2) ** 3, dtype=torch.bool), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, keys: module.update_box())
        self.update_box()

    # --- geometry --------------------------------------------------------------------------
    @property
    def cell_size(self) -> float:
        return 2 * self.bound / self.resolution

    def cell_coords(self, flat: torch.Tensor) -> torch.Tensor:
        """[M] flat indices -> [M, 3] integer cell coordinates."""
        R = self.resolution
        return torch.stack([flat // (R * R), (flat // R) % R, flat % R], dim=-1)

    def cell_centres(self, flat: torch.Tensor) -> torch.Tensor:
        """[M] flat indices -> [M, 3] world positions of the cell centres."""
        return -self.bound + (self.cell_coords(flat).float() + 0.5) * self.cell_size

    @property
    def padded(self) -> torch.Tensor:
        """[(R+2)^3] bool: ``occupied`` with one empty cell on every side (what :meth:`lookup`
        and the native march read; kept current by :meth:`update_box`)."""
        return self._padded

    def lookup(self, xyz: torch.Tensor) -> torch.Tensor:
        """Occupancy at points xyz [..., 3] -> bool [...] (False outside the grid).

        Reads a copy of ``occupied`` padded with one empty cell on every side, so points
        outside the grid clamp onto empty cells instead of needing a separate test."""
        R2 = self.resolution + 2
        cell = ((xyz + self.bound) * (1.0 / self.cell_size)).floor_().clamp_(-1, self.resolution)
        cell = cell.to(torch.int32) + 1
        flat = (cell[..., 0] * R2 + cell[..., 1]) * R2 + cell[..., 2]
        return self._padded[flat]

    # --- state -----------------------------------------------------------------------------
    @staticmethod
    def _to_camera(xyz: torch.Tensor, poses: torch.Tensor) -> torch.Tensor:
        """World points [N, 3] in the frames of cameras-to-world ``poses`` [B, 4, 4] -> [B, N, 3]."""
        rot = poses[:, :3, :3]  # camera = R^T (x - t)
        return torch.einsum("nk,bkj->bnj", xyz, rot) - torch.einsum("bk,bkj->bj", poses[:, :3, 3], rot).unsqueeze(1)

    @torch.no_grad()
    def mark_unseen(self, poses: torch.Tensor, intrinsics, H: int, W: int, max_poses: int = 64,
                    chunk: int = 1 << 14) -> int:
        """Mark cells outside the AABB, and cells no camera sees, unusable. Returns usable cells.

        poses [B, 4, 4] camera-to-world. At most ``max_poses`` evenly spaced poses are used
        (consecutive video frames see nearly the same cells). Tested on 2x2x2 blocks of cells
        with a margin of one block (the reference: single cells, a 2-cell margin): 8x less work.
        """
        fx, fy, cx, cy = (float(v) for v in intrinsics)
        device = self.density.device
        if poses.shape[0] > max_poses:
            poses = poses[torch.linspace(0, poses.shape[0] - 1, max_poses).round().long()]
        poses = poses.to(device=device, dtype=torch.float32)
        f = self._block
        size = self.cell_size * f
        Rb = self.resolution // f
        lo = torch.tensor(self.aabb[:3], device=device) - size / 2
        hi = torch.tensor(self.aabb[3:], device=device) + size / 2
        seen_blocks = torch.zeros(Rb ** 3, dtype=torch.bool, device=device)
        for start in range(0, Rb ** 3, chunk):
            flat = torch.arange(start, min(start + chunk, Rb ** 3), device=device)
            xyz = self._block_centres(flat)
            in_box = ((xyz >= lo) & (xyz <= hi)).all(dim=-1)
            if not bool(in_box.any()):
                continue
            flat, xyz = flat[in_box], xyz[in_box]
            cam = self._to_camera(xyz, poses)  # [B, N, 3]
            z = cam[..., 2]
            hit = (z > 0) & (cam[..., 0].abs() < cx / fx * z + size) & (cam[..., 1].abs() < cy / fy * z + size)
            seen_blocks[flat[hit.any(dim=0)]] = True
        seen = self._blocks_to_cells(seen_blocks)
        self.density[~seen] = -1.0
        self.density[seen] = self.density[seen].clamp(min=0.0)
        self.occupied.copy_(seen)
        self.update_box()
        return int(seen.sum())

    @property
    def _block(self) -> int:
        return 2 if self.resolution % 2 == 0 and self.resolution >= 64 else 1

    def _block_centres(self, flat: torch.Tensor) -> torch.Tensor:
        Rb, size = self.resolution // self._block, self.cell_size * self._block
        coords = torch.stack([flat // (Rb * Rb), (flat // Rb) % Rb, flat % Rb], dim=-1)
        return -self.bound + (coords.float() + 0.5) * size

    def _blocks_to_cells(self, blocks: torch.Tensor) -> torch.Tensor:
        f, Rb = self._block, self.resolution // self._block
        g = blocks.view(Rb, Rb, Rb)
        for d in range(3):
            g = g.repeat_interleave(f, dim=d)
        return g.reshape(-1)

    @torch.no_grad()
    def carve(self, poses: torch.Tensor, intrinsics, masks: torch.Tensor, keep_share: float = 0.05,
              chunk: int = 1 << 14) -> int:
        """Mark usable cells that (almost) every view sees as background unusable (space carving).

        masks [B, H, W] bool: True where the head may be (a dilated head silhouette) for the
        views ``poses`` [B, 4, 4]. A cell is carved when it falls on background in more than
        ``1 - keep_share`` of the views that see it, so a few bad masks, or a jaw that is
        open in only some frames, never carve the head away. Not in the reference: it only
        saves the CPU from sampling empty space the density updates would take long to clear.
        Decided per 2x2x2 block of cells (the silhouettes' dilation covers a block).
        Returns the usable cells left.
        """
        fx, fy, cx, cy = (float(v) for v in intrinsics)
        B, H, W = masks.shape
        device = self.density.device
        poses = poses.to(device=device, dtype=torch.float32)
        flat_masks = masks.to(device).reshape(B, -1)
        Rb = self.resolution // self._block
        usable_blocks = (self._cells_to_blocks(self.density >= 0)).nonzero().squeeze(1)
        carve_blocks = torch.zeros(Rb ** 3, dtype=torch.bool, device=device)
        for start in range(0, usable_blocks.numel(), chunk):
            flat = usable_blocks[start:start + chunk]
            cam = self._to_camera(self._block_centres(flat), poses)  # [B, N, 3]
            z = cam[..., 2].clamp(min=1e-6)
            col = (fx * cam[..., 0] / z + cx).floor()
            row = (fy * cam[..., 1] / z + cy).floor()
            inside = (cam[..., 2] > 0) & (col >= 0) & (col < W) & (row >= 0) & (row < H)
            pix = (row.clamp(0, H - 1) * W + col.clamp(0, W - 1)).long()
            on_head = torch.gather(flat_masks, 1, pix)
            seen = inside.sum(dim=0)
            background = (inside & ~on_head).sum(dim=0)
            carve_blocks[flat] = (seen > 0) & (background > (1 - keep_share) * seen)
        carve = self._blocks_to_cells(carve_blocks) & (self.density >= 0)
        self.density[carve] = -1.0
        self.occupied[carve] = False
        self.update_box()
        return int((self.density >= 0).sum())

    def _cells_to_blocks(self, cells: torch.Tensor) -> torch.Tensor:
        """Any-reduce a [R^3] bool grid to blocks [(R/f)^3]."""
        f, Rb = self._block, self.resolution // self._block
        return cells.view(Rb, f, Rb, f, Rb, f).any(dim=5).any(dim=3).any(dim=1).reshape(-1)

    @torch.no_grad()
    def update(self, density_fn: Callable[[torch.Tensor], torch.Tensor], *, decay: float = 0.95,
               fraction: float = 1.0, generator: torch.Generator | None = None, chunk: int = 1 << 16) -> None:
        """Re-query density at jittered centres of the usable cells (a random ``fraction`` of
        them, 1.0 = all as the reference) and refresh ``occupied``.

        ``density_fn(xyz [M, 3]) -> sigma [M]``. A cell is queried every 1/fraction updates on
        average, so its old value decays by ``decay ** (1 / fraction)`` per query: stale
        densities fade at the reference's rate per update whatever the fraction.
        """
        usable = (self.density >= 0).nonzero().squeeze(1)
        decay = decay ** (1.0 / fraction)
        if fraction < 1.0:
            n = max(1, int(round(usable.numel() * fraction)))
            pick = torch.randperm(usable.numel(), generator=generator, device="cpu")[:n].to(usable.device)
            usable = usable[pick]
        half = self.cell_size / 2
        for start in range(0, usable.numel(), chunk):
            flat = usable[start:start + chunk]
            jitter = (torch.rand(flat.numel(), 3, generator=generator, device="cpu").to(flat.device) * 2 - 1) * half
            sigma = density_fn(self.cell_centres(flat) + jitter).reshape(-1).float()
            self.density[flat] = torch.maximum(self.density[flat] * decay, sigma)
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Threshold the densities (min(mean over usable cells, density_thresh)) and dilate by one cell."""
        n_usable = int((self.density >= 0).sum())
        # unusable cells hold -1: clamped to 0 they add nothing (no copy of the usable cells)
        self.mean_density.fill_(float(self.density.clamp(min=0).sum()) / n_usable if n_usable else 0.0)
        thresh = min(float(self.mean_density), self.density_thresh)
        occupied = try_refresh(self.density, self.resolution, thresh)
        if occupied is None:
            occupied = self.refresh_reference(thresh)
        self.occupied.copy_(occupied)
        self.update_box()

    def refresh_reference(self, thresh: float) -> torch.Tensor:
        """The usable cells with a cell of density above ``thresh`` in their 3^3 neighbourhood
        (pure PyTorch; the native kernel's oracle)."""
        R = self.resolution
        above = (self.density > thresh).float().view(1, 1, R, R, R)
        dilated = F.max_pool3d(above, kernel_size=3, stride=1, padding=1).view(-1) > 0
        return dilated & (self.density >= 0)

    @torch.no_grad()
    def update_box(self) -> None:
        """Refresh what derives from ``occupied`` (call after editing it directly): the padded
        lookup copy, and ``occupied_box`` tightened to the occupied cells (empty grid: a point)."""
        R = self.resolution
        occ = self.occupied.view(R, R, R)
        self._padded.view(R + 2, R + 2, R + 2)[1:-1, 1:-1, 1:-1] = occ
        # the occupied rows along each axis (any-reductions: far cheaper than listing every cell)
        along = [occ.any(dim=2).any(dim=1), occ.any(dim=2).any(dim=0), occ.any(dim=1).any(dim=0)]
        if not bool(along[0].any()):
            self.occupied_box.zero_()
            return
        ends = [a.nonzero().squeeze(1) for a in along]
        lo = torch.stack([e[0] for e in ends]).float()
        hi = torch.stack([e[-1] for e in ends]).float() + 1
        self.occupied_box.copy_(torch.cat([-self.bound + lo * self.cell_size, -self.bound + hi * self.cell_size]))

    def occupied_share(self) -> float:
        usable = (self.density >= 0).sum().clamp(min=1)
        return float(self.occupied.sum() / usable)
