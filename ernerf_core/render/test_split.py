"""Stage ``render_test``: the validation split rendered with head + torso, and its numbers.

Writes (each atomically):

- ``test.mp4``: the rendered val frames, H.264 yuv420p 25 fps, with the subject's audio
  for exactly those frames muxed (``aud.wav`` from the first val frame's time)
- ``test_side_by_side.mp4``: ground truth | render, same audio
- ``contact_sheet.png``: a few evenly spaced frames, truth over render
- ``metrics.json``: full-frame PSNR and SSIM (with the torso), PSNR of the face box
  (landmarks' bounding box: the head region), LPIPS (null with the reason when the AlexNet
  weights are not on this machine), LMD (mouth landmarks 48-67, mean-centred, pixels),
  the lip-sync scores (see :mod:`ernerf_core.metrics.lipsync`) and the render speed.
  ``lipsync``: every correlation with its frame count and a seeded moving-block bootstrap
  95 % interval (``*_frames``, ``*_ci95``): rendered vs true mouth opening
  (``mouth_corr_truth``), mouth width (``mouth_width_corr_truth``), opening vs the audio
  envelope; ``opening_spread`` (std of the rendered opening / the truth's: an average mouth
  is near 0); ``audio_swap``: each val frame rendered again with the audio window of the
  frame half the split away: ``ratio`` = spread of the rendered opening's change / spread
  of the true opening's change between those frames (1 = the mouth follows the audio, 0 =
  the audio has no effect), ``corr_with_source_truth``, and ``lips_rect_pixel_change``
  (mean grey-level change in the lips rectangle, measurable without a detected face).
  ``lmd_ci95``: the interval of the mean LMD.

Frames are rendered, measured and streamed to both encoders one at a time, so memory does
not grow with the length of the split.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..device import resolve_device
from ..errors import StageError
from ..fsio import write_json
from ..media.frames import write_png
from ..media.video import FPS, VideoWriter
from ..metrics.lipsync import (
    audio_swap_figure,
    correlation_with_interval,
    lipsync_score,
    mean_with_interval,
    mouth_opening_from_landmarks,
    mouth_width_from_landmarks,
    spread_ratio,
    swap_shift,
)
from ..metrics.lmd import MEDIAPIPE_MOUTH_68, mouth_distance
from ..metrics.lpips_metric import load_lpips_metric
from ..metrics.psnr import psnr
from ..metrics.ssim import ssim
from ..metrics.syncnet import FRAMES, SyncNetWeightsError, face_crop, load_syncnet, lse
from ..model.portrait import load_portrait, render_frame, to_uint8
from ..progress import progress
from ..train.dataset import FEATURE_FILES, SubjectDataset
from . import check_downscale
from .contact_sheet import contact_sheet, pick_indices

STAGE = "render_test"
log = logging.getLogger(__name__)


def _load(subject: str, model_path: Path, device: torch.device):
    if not model_path.exists():
        raise StageError(subject, STAGE, f"{model_path} is missing", "run the portrait stage first")
    try:
        return load_portrait(model_path, device)
    except (ValueError, KeyError, RuntimeError) as err:
        raise StageError(subject, STAGE, f"{model_path} is not a portrait model ({err})",
                         "rerun the portrait stage to rewrite it") from None


class MouthTracks:
    """Face-mesh landmarks of the rendered and the real clip, frame by frame (video mode).

    Per frame only the mouth opening, the mouth width and the 20 mouth points are kept, so a
    long split costs a few hundred bytes a frame. ``swap`` (optional) tracks the audio-swap
    renders: each val frame's pose and eyes with the audio window of another val frame.
    """

    KEYS = ("render", "truth", "swap")

    def __init__(self):
        from ..media.face_mesh import MeshTracker

        self.trackers = {k: MeshTracker(max_faces=1) for k in self.KEYS}
        self.opening: dict[str, list[float]] = {k: [] for k in self.KEYS}
        self.width: dict[str, list[float]] = {k: [] for k in self.KEYS}
        self.mouth: dict[str, list[np.ndarray | None]] = {k: [] for k in self.KEYS}

    def _track(self, key: str, img: np.ndarray) -> None:
        mesh, _ = self.trackers[key](np.ascontiguousarray(img))
        if mesh is None:
            self.opening[key].append(float("nan"))
            self.width[key].append(float("nan"))
            self.mouth[key].append(None)
        else:
            mesh = mesh.astype(np.float64)
            self.opening[key].append(float(mouth_opening_from_landmarks(mesh[None])[0]))
            self.width[key].append(float(mouth_width_from_landmarks(mesh[None])[0]))
            self.mouth[key].append(mesh[MEDIAPIPE_MOUTH_68, :2])

    def add(self, render: np.ndarray, truth: np.ndarray, swapped: np.ndarray | None = None) -> None:
        self._track("render", render)
        self._track("truth", truth)
        if swapped is not None:
            self._track("swap", swapped)

    def close(self) -> None:
        for t in self.trackers.values():
            t.close()

    def results(self, wav: np.ndarray, sample_rate: int, swap_source: np.ndarray | None = None) -> dict:
        """The mouth block of metrics.json; ``swap_source[k]`` = the frame whose audio the k-th
        swap render got (None: no swap renders)."""
        open_r, open_t = np.array(self.opening["render"]), np.array(self.opening["truth"])
        width_r, width_t = np.array(self.width["render"]), np.array(self.width["truth"])
        lmd = [mouth_distance(a, b) for a, b in zip(self.mouth["render"], self.mouth["truth"], strict=True)
               if a is not None and b is not None]
        lmd_stats = mean_with_interval(np.array(lmd))
        rendered = lipsync_score(open_r, wav, sample_rate)
        truth = lipsync_score(open_t, wav, sample_rate)
        corr_truth = correlation_with_interval(open_r, open_t)
        swap = None
        if swap_source is not None and len(self.opening["swap"]) == len(open_r):
            swap = {"shift_frames": int(swap_source[0]) if len(swap_source) else 0,
                    **audio_swap_figure(open_r, np.array(self.opening["swap"]), open_t, swap_source)}
        finite = lambda v: [None if not np.isfinite(x) else float(x) for x in v]  # noqa: E731
        return {
            "lmd": lmd_stats["mean"],
            "lmd_frames": len(lmd),
            "lmd_ci95": lmd_stats["ci95"],
            "lipsync": {
                "mouth_corr_truth": corr_truth["r"],
                "mouth_corr_truth_frames": corr_truth["frames"],
                "mouth_corr_truth_ci95": corr_truth["ci95"],
                "mouth_width_corr_truth": correlation_with_interval(width_r, width_t),
                "opening_spread": spread_ratio(open_r, open_t),
                "audio_swap": swap,
                "audio_envelope_corr": rendered["audio_envelope_corr"],
                "audio_envelope_corr_frames": rendered["frames"],
                "audio_envelope_corr_ci95": rendered["ci95"],
                "lag_frames": rendered["lag_frames"],
                "truth_audio_envelope_corr": truth["audio_envelope_corr"],
                "truth_audio_envelope_corr_ci95": truth["ci95"],
                "face_found_share": rendered["face_found_share"],
                "truth_face_found_share": truth["face_found_share"],
                "bootstrap": {"kind": "moving block", "resamples": 2000, "seed": 0,
                              "block_frames": corr_truth["block"]},
            },
            "mouth_opening": {"render": finite(open_r), "truth": finite(open_t),
                              **({"swap": finite(self.opening["swap"])} if swap else {})},
            "mouth_width": {"render": finite(width_r), "truth": finite(width_t)},
        }


def _load_syncnet(subject: str, weights, dev: torch.device):
    if weights is None:
        return None
    try:
        return load_syncnet(weights, dev)
    except SyncNetWeightsError as err:
        raise StageError(subject, STAGE, f"render.syncnet_weights: {err}",
                         "give the path of syncnet_python's syncnet_v2.model (a state dict of its S "
                         "network), or set render.syncnet_weights: null") from None


def _syncnet_scores(subject: str, model, crops: dict, wav: np.ndarray, sr: int) -> dict | None:
    if model is None:
        return None
    if len(crops["render"]) <= FRAMES:
        log.warning("%s: %d val frames are too few for SyncNet (needs %d)", subject, len(crops["render"]),
                    FRAMES + 1)
        return {"render": None, "truth": None, "reason": f"fewer than {FRAMES + 1} val frames"}
    out = {}
    for key in ("render", "truth"):
        scores = lse(model, crops[key], wav, sr)
        scores.pop("mean_dist_per_offset")
        out[key] = scores
    return out


def _val_audio(data_dir: Path, first_aud_id: int, n_frames: int) -> tuple[np.ndarray, int, float]:
    """(the audio of the val frames [S], sample rate, start second in aud.wav)."""
    wav, sr = sf.read(data_dir / "aud.wav", dtype="float32", always_2d=True)
    start = first_aud_id / FPS
    seg = wav[int(round(start * sr)): int(round((start + n_frames / FPS) * sr)), 0]
    return seg, sr, start


def render_test(*, subject: str, model_path, data_dir, video_path, side_by_side_path, sheet_path,
                metrics_path, downscale: float | None = None, device: str = "auto", sheet_frames: int = 8,
                chunk: int = 1 << 15, audio_swap: bool = True, syncnet_weights=None) -> dict:
    """Render the val split of ``data_dir`` with the portrait ``model_path``; write the four outputs.

    ``downscale`` > 1 renders (and measures against ground truth shrunk to) ``H / downscale``;
    None = the size the head was trained at. ``audio_swap`` renders every val frame a second
    time with the audio window of the frame half the split away (circular) and reports how much
    the mouth moved (``lipsync.audio_swap``); it doubles the rendering time.
    ``syncnet_weights``: a syncnet_python ``S`` state dict (``syncnet_v2.model``); when given,
    ``metrics.json`` gets ``syncnet`` (LSE-D, LSE-C, offset) of the rendered and of the true val
    frames with their audio (:mod:`ernerf_core.metrics.syncnet`).
    """
    dev = resolve_device(device)
    check_downscale(subject, STAGE, downscale)
    model_path, data_dir = Path(model_path), Path(data_dir)
    syncnet = _load_syncnet(subject, syncnet_weights, dev)
    portrait = _load(subject, model_path, dev)
    downscale = portrait.train_downscale if downscale is None else float(downscale)
    backend = portrait.audio["backend"]
    if backend not in FEATURE_FILES:
        raise StageError(subject, STAGE, f"{model_path} was trained on unknown audio features '{backend}'",
                         "rerun train_torso and the portrait stage")
    val = SubjectDataset(data_dir, "val", subject=subject, stage=STAGE,
                         features_path=data_dir / FEATURE_FILES[backend], downscale=downscale, cache_mb=64)
    if val.full_size != portrait.size:
        H0, W0 = val.full_size  # noqa: N806
        raise StageError(subject, STAGE, f"the val frames are {W0}x{H0} but the model renders "
                         f"{portrait.size[1]}x{portrait.size[0]}",
                         "rerun train_torso and the portrait stage on this subject's data")
    if list(val.audio_shape) != list(portrait.audio["feature_shape"][1:]):
        raise StageError(subject, STAGE, f"{val.features_path.name} has {list(val.audio_shape)} features "
                         f"per frame but the model was trained on {portrait.audio['feature_shape'][1:]}",
                         "rerun audio_features and the training stages")
    n = len(val)
    wav, sr, start = _val_audio(data_dir, int(val.aud_ids_raw[0]), n)
    wav_path = data_dir / "aud.wav"
    H, W = val.H, val.W  # noqa: N806
    lpips_metric, lpips_reason = load_lpips_metric(dev)
    picks = set(pick_indices(n, sheet_frames).tolist())
    sheet_pairs, psnrs, face_psnrs, ssims, lpipss = [], [], [], [], []
    tracks = MouthTracks()
    shift = swap_shift(n) if audio_swap else 0
    swap_source = (np.arange(n) + shift) % n if shift else None
    crops: dict[str, list[np.ndarray]] = {"render": [], "truth": []}  # SyncNet face crops
    swap_pixels: list[float] = []  # mean |swap render - render| in the lips rectangle, 0..255
    render_seconds = 0.0
    try:
        with VideoWriter(video_path, W, H, n_frames=n, audio=wav_path, audio_start=start) as video, \
                VideoWriter(side_by_side_path, 2 * W, H, n_frames=n, audio=wav_path, audio_start=start) as sbs:
            for k in progress(range(n), desc=f"{subject} render_test", unit="frame"):
                t0 = time.perf_counter()
                out = render_frame(portrait, val.poses[k], val.audio_window(k), float(val.eye[k]),
                                   size=(H, W), chunk=chunk)
                frame = to_uint8(out["image"])
                render_seconds += time.perf_counter() - t0
                truth = val.image(k)
                video.write(frame)
                sbs.write(np.concatenate([truth, frame], axis=1))
                psnrs.append(psnr(frame, truth))
                r0, r1, c0, c1 = val.face_rect(k)
                if r1 > r0 and c1 > c0:
                    face_psnrs.append(psnr(frame[r0:r1, c0:c1], truth[r0:r1, c0:c1]))
                ssims.append(ssim(frame, truth))
                if lpips_metric is not None:
                    lpipss.append(lpips_metric.distance(frame, truth))
                swapped = None
                if swap_source is not None:
                    swapped = to_uint8(render_frame(portrait, val.poses[k], val.audio_window(int(swap_source[k])),
                                                    float(val.eye[k]), size=(H, W), chunk=chunk)["image"])
                    l0, l1, m0, m1 = val.lips_rect(k)
                    swap_pixels.append(float(np.abs(swapped[l0:l1, m0:m1].astype(np.float64)
                                                    - frame[l0:l1, m0:m1]).mean()))
                tracks.add(frame, truth, swapped)
                if syncnet is not None:
                    crops["render"].append(face_crop(frame, (r0, r1, c0, c1)))
                    crops["truth"].append(face_crop(truth, (r0, r1, c0, c1)))
                if k in picks:
                    sheet_pairs.append((truth, frame, f"#{int(val.img_ids[k])}"))
        mouth = tracks.results(wav, sr, swap_source)
        if mouth["lipsync"]["audio_swap"] is not None:
            mouth["lipsync"]["audio_swap"]["lips_rect_pixel_change"] = mean_with_interval(np.array(swap_pixels))
    finally:
        tracks.close()
    write_png(sheet_path, contact_sheet(sheet_pairs, columns=4, tile=min(256, W)))
    sync = _syncnet_scores(subject, syncnet, crops, wav, sr)
    finite = lambda xs: [x for x in xs if np.isfinite(x)]  # noqa: E731  (identical frames give inf)
    metrics = {
        "subject": subject, "frames": n, "size": [H, W], "first_frame": int(val.img_ids[0]),
        "audio_start_seconds": start,
        "psnr": float(np.mean(finite(psnrs))) if finite(psnrs) else None,
        "psnr_head_region": float(np.mean(finite(face_psnrs))) if finite(face_psnrs) else None,
        "ssim": float(np.mean(ssims)),
        "lpips": float(np.mean(lpipss)) if lpipss else None,
        "lpips_unavailable": lpips_reason,
        "syncnet": sync,
        "syncnet_unavailable": None if syncnet is not None else "render.syncnet_weights is null",
        "render_fps": n / max(render_seconds, 1e-9),
        "render_seconds": render_seconds,
        "device": str(dev),
        **mouth,
        "per_frame": {"psnr": [p if np.isfinite(p) else None for p in psnrs], "ssim": ssims},
    }
    write_json(metrics_path, metrics)
    num = lambda v, f=".3g": "n/a" if v is None else format(v, f)  # noqa: E731
    log.info("%s: %d val frames %dx%d, PSNR %s dB (head box %s), SSIM %s, LMD %s px, mouth corr %s, "
             "%.2f fps", subject, n, W, H, num(metrics["psnr"], ".2f"), num(metrics["psnr_head_region"], ".2f"),
             num(metrics["ssim"]), num(metrics["lmd"]), num(metrics["lipsync"]["mouth_corr_truth"]),
             metrics["render_fps"])
    return {k: v for k, v in metrics.items() if k not in ("per_frame", "mouth_opening", "mouth_width")}
