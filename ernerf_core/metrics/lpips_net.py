"""LPIPS (AlexNet) from local files only: never downloaded.

The ``lpips`` wheel ships its linear layers (``lpips/weights/v0.1/alex.pth``); the AlexNet
backbone is torchvision's ImageNet checkpoint, looked for in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, default ``~/.cache/torch``).
``load_lpips`` builds the network without weights, then loads both files with
``weights_only=True``; a missing file is a StageError naming it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"


def alexnet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_linear_path() -> Path | None:
    try:
        import lpips
    except ImportError:
        return None
    return Path(lpips.__file__).parent / "weights" / "v0.1" / "alex.pth"


def lpips_available() -> bool:
    lin = lpips_linear_path()
    return lin is not None and lin.exists() and alexnet_weights_path().exists()


def load_lpips(subject: str = "-", stage: str = "lpips", device="cpu") -> torch.nn.Module:
    """LPIPS(AlexNet) in eval mode, frozen; inputs are [B, 3, H, W] in [-1, 1]."""
    from ..errors import StageError

    lin = lpips_linear_path()
    if lin is None or not lin.exists():
        raise StageError(subject, stage, f"the lpips package or its linear weights ({lin}) are missing",
                         "pip install lpips, or set the perceptual loss to none")
    backbone = alexnet_weights_path()
    if not backbone.exists():
        raise StageError(subject, stage, f"AlexNet weights for LPIPS not found at {backbone}",
                         f"copy {ALEXNET_FILE} (from {ALEXNET_URL}) there, set TORCH_HOME, "
                         "or set the perceptual loss to none")
    import lpips

    with warnings.catch_warnings():  # lpips still passes torchvision's deprecated `pretrained=False`
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(net="alex", pretrained=False, pnet_rand=True, verbose=False)
    net.load_state_dict(torch.load(lin, map_location="cpu", weights_only=True), strict=False)
    features = torch.load(backbone, map_location="cpu", weights_only=True)
    # torchvision key "features.<i>.<param>" -> lpips slice holding layer i
    slices = {}
    for s in range(1, net.net.N_slices + 1):
        for name in getattr(net.net, f"slice{s}")._modules:
            slices[name] = s
    state = {}
    for key, value in features.items():
        parts = key.split(".")
        if parts[0] == "features" and parts[1] in slices:
            state[f"slice{slices[parts[1]]}.{parts[1]}.{parts[2]}"] = value
    missing = set(net.net.state_dict()) - set(state)
    if missing:
        raise StageError(subject, stage, f"{backbone} is not an AlexNet checkpoint (missing {sorted(missing)[:2]})",
                         f"replace it with torchvision's {ALEXNET_FILE}")
    net.net.load_state_dict(state)
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()
