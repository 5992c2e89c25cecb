"""BiSeNet face parsing (ResNet-18 context path, 19 CelebAMask-HQ classes), for the public
``79999_iter.pth`` checkpoint of face-parsing.PyTorch that the reference uses.

Module and parameter names match that checkpoint (``cp.resnet.layer1.0.conv1.weight``,
``cp.arm16.conv_atten.weight``, ``ffm.convblk.conv.weight``, ``conv_out.conv_out.weight``...),
so it loads with ``strict=True``. The backbone is torchvision's ResNet-18, whose layer names
are the checkpoint's, without its classifier. Written from the architecture description, not
copied; checked by a round trip of a randomly initialised state dict in the tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StageError
from .parsing_codes import BACKGROUND, HEAD, NECK, TORSO

N_CLASSES = 19
INPUT_SIZE = 512
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# CelebAMask-HQ class -> region, as the reference's face_parsing/test.py colours them:
# 0 background; 1-13 skin, brows, eyes, glasses, ears, earring, nose, mouth, lips -> head;
# 14 neck, 15 necklace -> neck; 16 cloth -> torso; 17 hair, 18 hat -> head.
CLASS_TO_REGION = np.array([BACKGROUND] + [HEAD] * 13 + [NECK, NECK, TORSO, HEAD, HEAD], dtype=np.uint8)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride=1, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _global_pool(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(2, 3), keepdim=True)


class AttentionRefinement(nn.Module):
    """Conv, then a channel gate from the globally pooled features."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.bn_atten(self.conv_atten(_global_pool(feat))))


class ResNet18Features(nn.Module):
    """torchvision ResNet-18 trunk returning the 1/8, 1/16 and 1/32 feature maps."""

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        trunk = resnet18(weights=None)
        self.conv1, self.bn1, self.maxpool = trunk.conv1, trunk.bn1, trunk.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            trunk.layer1,
            trunk.layer2,
            trunk.layer3,
            trunk.layer4,
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = ResNet18Features()
        self.arm16 = AttentionRefinement(256, 128)
        self.arm32 = AttentionRefinement(512, 128)
        self.conv_head32 = ConvBNReLU(128, 128)
        self.conv_head16 = ConvBNReLU(128, 128)
        self.conv_avg = ConvBNReLU(512, 128, ks=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        context = self.conv_avg(_global_pool(feat32))  # [B, 128, 1, 1], broadcast below
        up32 = F.interpolate(self.arm32(feat32) + context, size=feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, size=feat8.shape[2:], mode="nearest")
        return feat8, self.conv_head16(up16)


class FeatureFusion(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, ks=1, padding=0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        gate = torch.sigmoid(self.conv2(F.relu(self.conv1(_global_pool(feat)))))
        return feat * (1 + gate)


class OutputHead(nn.Module):
    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """[B, 3, H, W] ImageNet-normalised RGB -> [B, 19, H, W] class logits.

    The two auxiliary heads (``conv_out16``, ``conv_out32``) only served training; they are
    kept so the checkpoint loads strictly, and are not run.
    """

    def __init__(self, n_classes: int = N_CLASSES):
        super().__init__()
        self.cp = ContextPath()
        self.ffm = FeatureFusion(256, 256)
        self.conv_out = OutputHead(256, 256, n_classes)
        self.conv_out16 = OutputHead(128, 64, n_classes)
        self.conv_out32 = OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The 1/8 ResNet feature stands in for the spatial path, as in the checkpoint's model.
        feat8, context8 = self.cp(x)
        logits = self.conv_out(self.ffm(feat8, context8))
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(
    subject: str, stage: str, weights: str | os.PathLike | None, device: torch.device | str = "cpu"
) -> BiSeNet:
    """BiSeNet with the user's ``79999_iter.pth`` (a plain state dict, loaded weights-only)."""
    if not weights:
        raise StageError(
            subject,
            stage,
            "parsing.backend is bisenet but parsing.bisenet_weights is not set",
            "set parsing.bisenet_weights to your 79999_iter.pth (face-parsing.PyTorch), "
            "or use parsing.backend: landmarks",
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise StageError(
            subject,
            stage,
            f"BiSeNet weights {path} not found",
            "download 79999_iter.pth (face-parsing.PyTorch, as in the reference's README) to "
            "that path, or use parsing.backend: landmarks",
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and any(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}  # saved from DataParallel
    net = BiSeNet()
    # Checkpoints from PyTorch < 0.4.1 have no BatchNorm step counters; they are unused here.
    counters = {k: v for k, v in net.state_dict().items() if k.endswith("num_batches_tracked")}
    state = {**counters, **state} if isinstance(state, dict) else state
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise StageError(
            subject,
            stage,
            f"{path} is not a BiSeNet face-parsing checkpoint ({str(err).splitlines()[0]})",
            "use 79999_iter.pth from face-parsing.PyTorch",
        ) from None
    return net.to(device).eval()


@torch.no_grad()
def bisenet_regions(net: BiSeNet, rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [H, W, 3] -> region labels uint8 [H, W], run at 512x512 like the reference."""
    h, w = rgb.shape[:2]
    device = next(net.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(
        x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False, antialias=True
    )  # like the reference's PIL resize
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    classes = net((x - mean) / std)[0].argmax(0).to(torch.uint8).cpu().numpy()
    regions = CLASS_TO_REGION[classes]
    if (h, w) != regions.shape:
        import cv2

        regions = cv2.resize(regions, (w, h), interpolation=cv2.INTER_NEAREST)
    return regions
