"""LPIPS (AlexNet) from weights already on this machine; never downloads.

The LPIPS linear heads ship inside the ``lpips`` wheel; the AlexNet trunk is torchvision's
ImageNet checkpoint, looked for where torchvision would cache it
(``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``). Only its ``features.*`` tensors
are used, so a file holding just those works too. When the trunk is missing the metric is
reported as unavailable with the reason, instead of being fetched from the internet.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"


def default_alexnet_path() -> Path:
    """Where torchvision caches AlexNet (honours TORCH_HOME)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def missing_reason(path: Path) -> str:
    return (f"AlexNet weights not found at {path}; LPIPS needs torchvision's ImageNet AlexNet "
            f"({ALEXNET_FILE}) there (copy it in, or run torchvision.models.alexnet(weights='DEFAULT') "
            "once on a machine with internet)")


class LpipsAlex(torch.nn.Module):
    """LPIPS v0.1 with the AlexNet trunk loaded from a local file."""

    def __init__(self, alexnet_path: str | Path | None = None):
        super().__init__()
        import lpips

        path = Path(alexnet_path) if alexnet_path else default_alexnet_path()
        if not path.is_file():
            raise FileNotFoundError(missing_reason(path))
        # pnet_rand=True: build the trunk without torchvision's download; filled below.
        with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained`
            warnings.simplefilter("ignore", UserWarning)
            self.model = lpips.LPIPS(net="alex", version="0.1", pretrained=True, pnet_rand=True,
                                     verbose=False).eval()
        state = torch.load(path, map_location="cpu", weights_only=True)
        self.model.net.load_state_dict(_trunk_state(self.model.net, state), strict=True)
        for p in self.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def forward(self, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
        """pred, gt: [B, 3, H, W] in [0, 1] -> [B] distances (lower = more alike)."""
        return self.model(pred * 2 - 1, gt * 2 - 1).flatten()

    def image_distance(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """One [H, W, 3] uint8 image pair -> LPIPS distance."""
        dev = next(self.parameters()).device
        to_t = lambda a: torch.from_numpy(a).to(dev).permute(2, 0, 1)[None].float() / 255.0  # noqa: E731
        return float(self(to_t(pred), to_t(gt))[0])


def _trunk_state(net: torch.nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision ``features.<i>.<p>`` keys onto lpips' ``slice<k>.<i>.<p>`` layout."""
    out = {}
    for name in net.state_dict():
        _, index, param = name.split(".")
        key = f"features.{index}.{param}"
        if key not in state:
            raise KeyError(f"{key} missing from the AlexNet weights file")
        out[name] = state[key]
    return out


def load_lpips(alexnet_path: str | Path | None = None,
               device: torch.device | str = "cpu") -> tuple[LpipsAlex | None, str | None]:
    """(metric, None) when the weights are here, else (None, reason)."""
    try:
        return LpipsAlex(alexnet_path).to(device), None
    except FileNotFoundError as err:
        return None, str(err)
