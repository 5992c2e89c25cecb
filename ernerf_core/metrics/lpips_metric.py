"""LPIPS (AlexNet) as an image metric, from weights already on this machine; never downloads.

The network and its weight lookup are :mod:`ernerf_core.metrics.lpips_net` (the same one the
lips fine-tuning loss uses): linear heads from the ``lpips`` wheel, the AlexNet trunk from
``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``. When a file is missing the metric
is unavailable and the reason (naming the file) is reported instead of a number.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import StageError


class LpipsMetric:
    """``metric.distance(pred, gt)`` for [H, W, 3] uint8 RGB images (lower = more alike)."""

    def __init__(self, net: torch.nn.Module):
        self.net = net
        self.device = next(net.parameters()).device

    def _tensor(self, img: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(img)).to(self.device).permute(2, 0, 1)[None].float()
        return t / 127.5 - 1  # LPIPS takes [-1, 1]

    @torch.no_grad()
    def distance(self, pred: np.ndarray, gt: np.ndarray) -> float:
        return float(self.net(self._tensor(pred), self._tensor(gt)).flatten()[0])


def load_lpips_metric(device: torch.device | str = "cpu") -> tuple[LpipsMetric | None, str | None]:
    """(metric, None) when the weights are on this machine, else (None, why not)."""
    from .lpips_net import load_lpips

    try:
        return LpipsMetric(load_lpips("-", "lpips", device)), None
    except ImportError as err:
        return None, f"the lpips package is not installed ({err})"
    except StageError as err:
        return None, err.problem
