"""LPIPS (AlexNet) from local files only: never downloaded.

The ``lpips`` wheel ships its linear layers (``lpips/weights/v0.1/alex.pth``); the AlexNet
backbone is torchvision's ImageNet checkpoint, looked for in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/alexnet-owt-7be5be79.pth``, default ``~/.cache/torch``).
``load_lpips`` builds the network without weights, then loads both files with
``weights_only=True`` and strictly: every weight the network needs must be in its file, with
its shape, and nothing else may be there (the torchvision file's classifier is not read). A
missing file, a missing or unexpected key, or a wrong shape is a one-line StageError naming
the file.
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
    # the linear layers alone: the network's state also holds the backbone and the input scaling
    lin_layers = torch.nn.ModuleDict({f"lin{i}": getattr(net, f"lin{i}") for i in range(len(net.lins))})
    _load_strict(lin_layers, _read(lin, subject, stage), lin, subject, stage,
                 "reinstall lpips (pip install --force-reinstall lpips)")
    features = _read(backbone, subject, stage)
    # torchvision key "features.<i>.<param>" -> lpips slice holding layer i
    slices = {}
    for s in range(1, net.net.N_slices + 1):
        for name in getattr(net.net, f"slice{s}")._modules:
            slices[name] = s
    state = {}
    for key, value in features.items():
        parts = key.split(".")
        if parts[0] == "classifier":  # ImageNet's classifier head: LPIPS has none
            continue
        if parts[0] == "features" and len(parts) == 3 and parts[1] in slices:
            state[f"slice{slices[parts[1]]}.{parts[1]}.{parts[2]}"] = value
        else:
            state[key] = value  # reported as unexpected
    _load_strict(net.net, state, backbone, subject, stage, f"replace it with torchvision's {ALEXNET_FILE}")
    for p in net.parameters():
        p.requires_grad_(False)
    return net.to(device).eval()


def _read(path: Path, subject: str, stage: str) -> dict:
    from ..errors import StageError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, not a torch file, or a pickle that is more than tensors
        raise StageError(subject, stage, f"{path} cannot be read as weights ({type(err).__name__})",
                         "replace the file") from None
    if not isinstance(state, dict):
        raise StageError(subject, stage, f"{path} holds a {type(state).__name__}, not a state dict", "replace the file")
    return state


def _load_strict(module: torch.nn.Module, state: dict, path: Path, subject: str, stage: str, remedy: str) -> None:
    """``module.load_state_dict(state)`` with every key and shape checked; a mismatch names the file."""
    from ..errors import StageError

    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = [f"{what} {keys[:3]}" for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                        ("wrong shape", wrong)) if keys]
    if problems:
        raise StageError(subject, stage, f"{path} does not fit the LPIPS network ({'; '.join(problems)})", remedy)
    module.load_state_dict(state, strict=True)
