"""Error map: where each training frame is still wrong, so rays go there (done right).

Per frame, a coarse grid of ``cells x cells`` (at most the image size) holds an EMA of the
per-pixel loss of the rays rendered in each cell (new = 0.1 * old + 0.9 * batch mean, the
refined fork's rate), stored as float16 on the CPU: 8 KB per frame at 64 x 64, so 6,000
frames cost 49 MB (the reference allocates 256 x 256 float32 per frame on the GPU, 1.6 GB).

Sampling draws a cell with probability ``(1 - u) * E / sum(E) + u * |cell| / (H W)`` (``u``
= uniform share, so no pixel starves) and a uniform pixel inside it. Patches are centred on
drawn pixels (clamped into the image). ``update`` writes at the cells of the pixels actually
rendered, whatever sampled them (uniform, patch, lips rectangle). Maps start at 1 (above any
loss), so unseen cells are visited first.
"""

from __future__ import annotations

import torch

EMA_OLD = 0.1  # refined fork: ema = 0.1 * old + 0.9 * new


class ErrorMap:
    def __init__(self, n_frames: int, H: int, W: int, cells: int = 64, uniform_share: float = 0.25):
        if not 0.0 <= uniform_share <= 1.0:
            raise ValueError("uniform_share must be in [0, 1]")
        self.H, self.W = int(H), int(W)
        self.gh, self.gw = min(int(cells), self.H), min(int(cells), self.W)
        self.uniform_share = float(uniform_share)
        self.grid = torch.ones(n_frames, self.gh, self.gw, dtype=torch.float16)
        # cell boundaries: cell k spans [start[k], start[k+1]); every cell holds >= 1 pixel
        self.row_start = (torch.arange(self.gh + 1) * self.H + self.gh - 1) // self.gh
        self.col_start = (torch.arange(self.gw + 1) * self.W + self.gw - 1) // self.gw
        self.row_cell = torch.searchsorted(self.row_start, torch.arange(self.H), right=True) - 1
        self.col_cell = torch.searchsorted(self.col_start, torch.arange(self.W), right=True) - 1
        rows = (self.row_start[1:] - self.row_start[:-1]).float()
        cols = (self.col_start[1:] - self.col_start[:-1]).float()
        self.cell_pixels = torch.outer(rows, cols).view(-1)  # [gh * gw]

    @property
    def nbytes(self) -> int:
        return self.grid.numel() * self.grid.element_size()

    def probabilities(self, frame: int) -> torch.Tensor:
        """[gh * gw] cell probabilities for a frame."""
        e = self.grid[frame].view(-1).float().clamp(min=0)
        total = e.sum()
        uniform = self.cell_pixels / (self.H * self.W)
        if total <= 0:
            return uniform
        return (1 - self.uniform_share) * e / total + self.uniform_share * uniform

    def sample_pixels(self, frame: int, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[n] flat pixel indices (row * W + col) drawn from the frame's map."""
        cells = torch.multinomial(self.probabilities(frame), n, replacement=True, generator=generator)
        cr, cc = cells // self.gw, cells % self.gw
        u = torch.rand(2, n, generator=generator)
        r0, r1 = self.row_start[cr], self.row_start[cr + 1]
        c0, c1 = self.col_start[cc], self.col_start[cc + 1]
        r = r0 + (u[0] * (r1 - r0)).long()
        c = c0 + (u[1] * (c1 - c0)).long()
        return r * self.W + c

    def sample_patch_origins(self, frame: int, n: int, size: int,
                             generator: torch.Generator | None = None) -> torch.Tensor:
        """[n] flat top-left pixels of size x size patches centred on drawn pixels."""
        centre = self.sample_pixels(frame, n, generator)
        r = (centre // self.W - size // 2).clamp(0, self.H - size)
        c = (centre % self.W - size // 2).clamp(0, self.W - size)
        return r * self.W + c

    def update(self, frame: int, pixels: torch.Tensor, losses: torch.Tensor) -> None:
        """EMA-update the cells of rendered ``pixels`` [M] (flat) with their ``losses`` [M]."""
        pixels, losses = pixels.detach().cpu().long(), losses.detach().cpu().float()
        cell = self.row_cell[pixels // self.W] * self.gw + self.col_cell[pixels % self.W]
        n_cells = self.gh * self.gw
        total = torch.zeros(n_cells).index_add_(0, cell, losses)
        count = torch.zeros(n_cells).index_add_(0, cell, torch.ones_like(losses))
        touched = count > 0
        g = self.grid[frame].view(-1)
        mean = total[touched] / count[touched]
        g[touched] = (EMA_OLD * g[touched].float() + (1 - EMA_OLD) * mean).to(torch.float16)

    def state_dict(self) -> dict:
        return {"grid": self.grid, "uniform_share": self.uniform_share, "H": self.H, "W": self.W}

    def load_state_dict(self, state: dict) -> None:
        if tuple(state["grid"].shape) != tuple(self.grid.shape):
            raise ValueError(f"error map shape {tuple(state['grid'].shape)} != {tuple(self.grid.shape)}")
        self.grid.copy_(state["grid"])
