"""Stage ``render_audio``: the portrait saying any audio.

Inputs: the portrait ``model.pt`` and the driving audio's folder from rule
``driving_features`` (features ``[M, W, C]``, ``aud.wav`` 16 kHz mono, and
``audio_features.json``). The features must come from the backend the model was trained
on (:func:`ernerf_core.audio.check_compatible`; a mismatch is a one-line error saying what
to set). Poses are the training track, played forwards and backwards for audio longer
than it, optionally smoothed over a 7-frame window; the eye value follows the track or is
fixed. The output is ``<audio-name>.mp4`` (H.264 yuv420p 25 fps, the audio muxed), one
frame per feature frame.

Memory stays flat for long audio: the features file is read 8 frames at a time with
``pread`` (:class:`FeatureFile`; a memory map would keep every page it touched resident, so
3 minutes of 512-wide features would add ~150 MB), and frames are streamed into ffmpeg as
they are rendered (ffmpeg reads the WAV itself). Only the pose track ([M, 4, 4] float32, 64
bytes a frame) grows with the audio.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..audio import check_compatible
from ..device import resolve_device
from ..errors import StageError
from ..fsio import read_json
from ..media.video import VideoWriter
from ..memory import current_rss_mb, peak_rss_mb
from ..model.audio import ATT_WINDOW, audio_window
from ..model.portrait import load_portrait, render_frame, to_uint8
from ..progress import progress
from . import check_downscale
from .poses import driving_track

STAGE = "render_audio"
log = logging.getLogger(__name__)


class FeatureFile:
    """A ``.npy`` features file [M, W, C] read a few frames at a time (``file[lo:hi]``), never
    held whole: the header is parsed once, each slice is one ``pread`` into a new array."""

    def __init__(self, path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            fmt = np.lib.format
            major, _ = fmt.read_magic(fh)
            read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran or dtype.hasobject:
            raise ValueError("not a C-ordered numeric array")
        self.shape, self.dtype = tuple(shape), dtype
        self.ndim = len(self.shape)
        self.frame_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * dtype.itemsize
        if self.path.stat().st_size < self.offset + self.shape[0] * self.frame_bytes:
            raise ValueError("shorter than its header says: truncated")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: slice) -> np.ndarray:
        lo, hi, _ = key.indices(len(self))
        n = max(0, hi - lo)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            buf = os.pread(fd, n * self.frame_bytes, self.offset + lo * self.frame_bytes)
        finally:
            os.close(fd)
        return np.frombuffer(buf, self.dtype).reshape(n, *self.shape[1:])


def window_at(features, i: int) -> torch.Tensor:
    """The [8, C, W] attention window of frame i from features [M, W, C] (an array or a FeatureFile)."""
    lo, hi = max(0, i - ATT_WINDOW // 2), min(len(features), i + ATT_WINDOW // 2)
    part = torch.from_numpy(np.array(features[lo:hi], dtype=np.float32)).transpose(1, 2)  # a copy
    return audio_window(part, i - lo, ATT_WINDOW)  # zero padded only at the clip's ends


def render_audio(*, subject: str, model_path, features_path, wav_path, audio_manifest_path, video_path,
                 smooth_path: bool = True, smooth_window: int = 7, fixed_eye: float | None = None,
                 downscale: float | None = None, device: str = "auto", chunk: int = 1 << 15) -> dict:
    """Render the portrait ``model_path`` driven by the features at ``features_path``.

    ``downscale`` > 1 renders ``H / downscale`` x ``W / downscale`` frames; None = the size the
    head was trained at.
    """
    dev = resolve_device(device)
    check_downscale(subject, STAGE, downscale)
    model_path = Path(model_path)
    if not model_path.exists():
        raise StageError(subject, STAGE, f"{model_path} is missing", "run the portrait stage first")
    try:
        portrait = load_portrait(model_path, dev)
    except (ValueError, KeyError, RuntimeError) as err:
        raise StageError(subject, STAGE, f"{model_path} is not a portrait model ({err})",
                         "rerun the portrait stage to rewrite it") from None
    driving = read_json(audio_manifest_path)
    check_compatible(portrait.audio, driving, subject, STAGE)
    try:
        features = FeatureFile(features_path)  # [M, W, C], read 8 frames at a time
    except (OSError, ValueError) as err:
        raise StageError(subject, STAGE, f"cannot read the driving features {features_path} ({err})",
                         "rerun driving_features for this audio") from None
    expected = list(portrait.audio["feature_shape"][1:])
    if features.ndim != 3 or list(features.shape[1:]) != expected:
        raise StageError(subject, STAGE, f"{features_path} holds features {list(features.shape)}, "
                         f"the model needs [frames, {expected[0]}, {expected[1]}]",
                         "rerun driving_features with the model's audio backend")
    if fixed_eye is not None and not 0.0 <= float(fixed_eye) <= 1.0:
        raise StageError(subject, STAGE, f"render.fixed_eye {fixed_eye} is outside [0, 1]",
                         "use 0 (eyes open) .. 1 (closed), or null to follow the training track")
    n = len(features)
    poses, eyes, _ = driving_track(portrait.poses.numpy(), portrait.eye.numpy(), n,
                                   smooth_window=smooth_window if smooth_path else 0, fixed_eye=fixed_eye)
    downscale = portrait.train_downscale if downscale is None else float(downscale)
    H, W = (int(round(v / downscale)) for v in portrait.size)  # noqa: N806
    t_render = 0.0
    rss_early = None  # resident memory once the first tenth of the frames is out
    with VideoWriter(video_path, W, H, n_frames=n, audio=wav_path) as video:
        for i in progress(range(n), desc=f"{subject} {Path(video_path).stem}", unit="frame"):
            t0 = time.perf_counter()
            out = render_frame(portrait, torch.from_numpy(poses[i]), window_at(features, i), float(eyes[i]),
                               size=(H, W), chunk=chunk)
            frame = to_uint8(out["image"])
            t_render += time.perf_counter() - t0
            video.write(frame)
            if i == max(1, n // 10):
                rss_early = current_rss_mb()
    fps = n / max(t_render, 1e-9)
    # the peak covers the early sample too (peak_rss_mb covers the current one)
    peak = max(peak_rss_mb(), rss_early or 0.0)
    memory = {"rss_mb_after_first_tenth": rss_early, "rss_mb_at_end": current_rss_mb(), "peak_rss_mb": peak}
    log.info("%s: %d frames (%.1f s of audio, track of %d poses) -> %s at %.2f fps; resident memory %s MB "
             "after a tenth of the frames, %s MB at the end (peak %.0f MB)", subject, n, n / 25,
             len(portrait.poses), video_path, fps, _mb(memory["rss_mb_after_first_tenth"]),
             _mb(memory["rss_mb_at_end"]), memory["peak_rss_mb"])
    return {"frames": n, "render_fps": fps, "video": str(video_path), "memory": memory}


def _mb(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"
