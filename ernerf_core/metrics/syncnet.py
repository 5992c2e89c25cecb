"""SyncNet LSE-D / LSE-C (Chung & Zisserman 2016, "Out of time"), from weights you provide.

The field's lip-sync numbers (Wav2Lip, ER-NeRF's "Sync"): the ``syncnet_python`` network
embeds 5 frames of a face crop and 0.2 s of MFCCs; for each offset of the audio against the
video (``-vshift..+vshift`` frames) the mean embedding distance over the clip is taken.

- LSE-D = the smallest mean distance (lower is better),
- LSE-C = median over offsets minus that minimum (higher is better: a clear dip),
- offset = the audio shift of the minimum, in frames (``vshift - argmin``, as syncnet_python).

The network here is our own definition with the layer shapes and state-dict key names of
syncnet_python's ``S`` model (``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
``netfclip.*``), so its ``syncnet_v2.model`` loads as is. Nothing is downloaded: the file is
read with ``torch.load(weights_only=True)`` and its keys must match exactly (a ``__S__.``
or ``module.`` prefix is removed; BatchNorm ``num_batches_tracked`` counters, which files
older than PyTorch 0.4.1 lack, may be missing).

Inputs as syncnet_python feeds them: 224 x 224 BGR face crops, values 0..255 (the crop of
its ``run_pipeline``: the face box widened by 40 % and extended downwards), and 13 MFCCs at
100 Hz of the 16 kHz audio at int16 scale (python_speech_features' defaults, computed here
with numpy: 25 ms Hamming-free frames, 512-point FFT, 26 mel filters, lifter 22, c0 = log
frame energy).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

CROP = 224
FRAMES = 5  # video frames per embedding (0.2 s)
MFCC_STEPS = 20  # 100 Hz MFCC steps per embedding (0.2 s)
MFCC_PER_FRAME = 4  # 100 Hz / 25 fps
EMBED = 1024


def _conv_bn(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """syncnet_python's ``S`` network: index positions inside each ``nn.Sequential`` follow it,
    so the state-dict keys are the same."""

    def __init__(self, embed: int = EMBED):
        super().__init__()
        c2, b2 = nn.Conv2d, nn.BatchNorm2d
        self.netcnnaud = nn.Sequential(
            *_conv_bn(c2(1, 64, 3, padding=1), b2(64)), nn.MaxPool2d(1, 1),  # 0-3
            *_conv_bn(c2(64, 192, 3, padding=1), b2(192)), nn.MaxPool2d(3, stride=(1, 2)),  # 4-7
            *_conv_bn(c2(192, 384, 3, padding=1), b2(384)),  # 8-10
            *_conv_bn(c2(384, 256, 3, padding=1), b2(256)),  # 11-13
            *_conv_bn(c2(256, 256, 3, padding=1), b2(256)), nn.MaxPool2d(3, stride=2),  # 14-17
            c2(256, 512, (5, 4)), b2(512), nn.ReLU(),  # 18-20
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed))
        c3, b3 = nn.Conv3d, nn.BatchNorm3d
        self.netcnnlip = nn.Sequential(
            *_conv_bn(c3(3, 96, (5, 7, 7), stride=(1, 2, 2)), b3(96)),  # 0-2
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 3
            *_conv_bn(c3(96, 256, (1, 5, 5), stride=(1, 2, 2), padding=(0, 1, 1)), b3(256)),  # 4-6
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),  # 7
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),  # 8-10
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),  # 11-13
            *_conv_bn(c3(256, 256, (1, 3, 3), padding=(0, 1, 1)), b3(256)),  # 14-16
            nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2)),  # 17
            *_conv_bn(c3(256, 512, (1, 6, 6)), b3(512)),  # 18-20
        )

    def forward_aud(self, mfcc: torch.Tensor) -> torch.Tensor:
        """[B, 1, 13, 20] MFCCs -> [B, embed]."""
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, video: torch.Tensor) -> torch.Tensor:
        """[B, 3, 5, 224, 224] BGR 0..255 -> [B, embed]."""
        return self.netfclip(self.netcnnlip(video).flatten(1))


class SyncNetWeightsError(ValueError):
    """The weights file is missing, unreadable or not syncnet_python's ``S`` state dict."""


def load_syncnet(path, device: str | torch.device = "cpu") -> SyncNet:
    """Our SyncNet with the weights of ``path`` (a state dict), in eval mode; strict key check."""
    path = Path(path)
    if not path.is_file():
        raise SyncNetWeightsError(f"{path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001  (pickle, zip and torch errors all mean "not readable")
        raise SyncNetWeightsError(f"{path} is not a weights-only torch file ({type(err).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SyncNetWeightsError(f"{path} does not hold a state dict of tensors")
    for prefix in ("__S__.", "module."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    model = SyncNet()
    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in own)
    if missing or unexpected:
        show = lambda ks: ", ".join(ks[:3]) + (f" (+{len(ks) - 3} more)" if len(ks) > 3 else "")  # noqa: E731
        parts = ([f"missing {len(missing)} keys: {show(missing)}"] if missing else []) + \
                ([f"unexpected {len(unexpected)} keys: {show(unexpected)}"] if unexpected else [])
        raise SyncNetWeightsError(f"{path} is not syncnet_python's S model ({'; '.join(parts)})")
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        raise SyncNetWeightsError(f"{path} has other shapes than syncnet_python's S model: "
                                  f"{k} is {tuple(state[k].shape)}, expected {tuple(own[k].shape)}")
    model.load_state_dict(state, strict=False)  # only num_batches_tracked may be absent (checked above)
    return model.to(device).eval()


# ---- inputs -----------------------------------------------------------------------------------

def mfcc(wav: np.ndarray, sample_rate: int = 16000, numcep: int = 13, nfilt: int = 26, nfft: int = 512,
         winlen: float = 0.025, winstep: float = 0.01, preemph: float = 0.97, ceplifter: int = 22) -> np.ndarray:
    """[S] float waveform in -1..1 -> [T, 13] MFCCs at 100 Hz, python_speech_features' ``mfcc``
    defaults on the int16-scaled signal (as syncnet_python reads the wav)."""
    from scipy.fft import dct

    x = np.asarray(wav, np.float64) * 32768.0
    x = np.append(x[:1], x[1:] - preemph * x[:-1])
    flen, fstep = int(round(winlen * sample_rate)), int(round(winstep * sample_rate))
    n = 1 if len(x) <= flen else 1 + int(np.ceil((len(x) - flen) / fstep))
    x = np.concatenate([x, np.zeros(max(0, (n - 1) * fstep + flen - len(x)))])
    idx = np.arange(flen)[None, :] + fstep * np.arange(n)[:, None]
    frames = x[idx]
    pspec = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    energy = pspec.sum(1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    hz2mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    mel2hz = lambda mel: 700 * (10 ** (mel / 2595.0) - 1)  # noqa: E731
    points = np.linspace(hz2mel(0), hz2mel(sample_rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * mel2hz(points) / sample_rate).astype(int)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        fb[j, lo:mid] = (np.arange(lo, mid) - lo) / max(mid - lo, 1)
        fb[j, mid:hi] = (hi - np.arange(mid, hi)) / max(hi - mid, 1)
    feat = pspec @ fb.T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    feat = dct(feat, type=2, axis=1, norm="ortho")[:, :numcep]
    feat *= 1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter)
    feat[:, 0] = np.log(energy)
    return feat.astype(np.float32)


def face_crop(frame_rgb: np.ndarray, rect: tuple[int, int, int, int], crop_scale: float = 0.4) -> np.ndarray:
    """RGB frame + the face's landmark box (row0, row1, col0, col1) -> 224 x 224 BGR uint8
    crop as syncnet_python's ``crop_video``: half-size bs = max(h, w) / 2, rows my - bs ..
    my + bs (1 + 2 cs), columns mx +- bs (1 + cs), padded with grey 110."""
    import cv2

    r0, r1, c0, c1 = rect
    my, mx = (r0 + r1) / 2, (c0 + c1) / 2
    bs = max(r1 - r0, c1 - c0, 2) / 2
    pad = int(np.ceil(bs * (1 + 2 * crop_scale))) + 1
    img = np.pad(frame_rgb[..., ::-1], ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
    my, mx = my + pad, mx + pad
    top, bottom = int(round(my - bs)), int(round(my + bs * (1 + 2 * crop_scale)))
    left, right = int(round(mx - bs * (1 + crop_scale))), int(round(mx + bs * (1 + crop_scale)))
    return cv2.resize(np.ascontiguousarray(img[top:bottom, left:right]), (CROP, CROP))


# ---- the score --------------------------------------------------------------------------------

@torch.no_grad()
def lse(model: SyncNet, crops: list[np.ndarray] | np.ndarray, wav: np.ndarray, sample_rate: int = 16000,
        vshift: int = 15, batch: int = 20) -> dict:
    """LSE-D, LSE-C and the offset of BGR 224 px face crops (25 fps) against their audio.

    Needs at least 6 frames (one 5-frame window). Returns ``{"lse_d", "lse_c", "offset_frames",
    "windows", "vshift"}``; also ``mean_dist_per_offset`` (index i = offset vshift - i).
    """
    dev = next(model.parameters()).device
    crops = np.asarray(crops)
    cc = mfcc(wav, sample_rate)
    n = min(len(crops), len(wav) // (sample_rate // 25))
    last = n - FRAMES
    if last < 1:
        raise ValueError(f"SyncNet needs at least {FRAMES + 1} frames, got {n}")
    cc = np.concatenate([cc, np.zeros((max(0, last * MFCC_PER_FRAME + MFCC_STEPS - len(cc)), cc.shape[1]),
                                      np.float32)])
    video = torch.from_numpy(crops[:n]).float().permute(3, 0, 1, 2)  # [3, n, 224, 224]
    audio = torch.from_numpy(cc.T.copy())[None]  # [1, 13, T]
    im_feat, cc_feat = [], []
    for i in range(0, last, batch):
        js = range(i, min(last, i + batch))
        im_feat.append(model.forward_lip(torch.stack([video[:, j:j + FRAMES] for j in js]).to(dev)).cpu())
        a = torch.stack([audio[:, :, j * MFCC_PER_FRAME: j * MFCC_PER_FRAME + MFCC_STEPS] for j in js])
        cc_feat.append(model.forward_aud(a.to(dev)).cpu())
    im, au = torch.cat(im_feat), torch.cat(cc_feat)
    win = 2 * vshift + 1
    au_pad = torch.nn.functional.pad(au, (0, 0, vshift, vshift))
    dists = torch.stack([torch.nn.functional.pairwise_distance(im[[i]].repeat(win, 1), au_pad[i:i + win])
                         for i in range(len(im))], 1)  # [win, windows]
    mdist = dists.mean(1)
    minval, minidx = torch.min(mdist, 0)
    return {"lse_d": float(minval), "lse_c": float(torch.median(mdist) - minval),
            "offset_frames": int(vshift - int(minidx)), "windows": int(len(im)), "vshift": vshift,
            "mean_dist_per_offset": [float(x) for x in mdist]}
