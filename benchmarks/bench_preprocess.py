"""Face preprocessing throughput at 512 x 512: landmarks + parsing per frame.

Default path: MediaPipe face mesh (video mode) + MediaPipe selfie segmentation + the
landmark parsing geometry (``landmark_parsing.parse_frame``), exactly what the stages run.
Baseline, run in the same process on the same frames: the reference's classic networks,
built from their packages' classes with random weights (nothing downloaded): face-alignment's
S3FD detector on the frame + its 2D FAN (4 stacks) on the 256 x 256 face crop, and BiSeNet
(ResNet-18, 19 classes) at 512 x 512. Network time only (no post-processing, no file I/O),
so the baseline is a lower bound of the classic path's cost. Both use the same torch threads.
Targets: default >= 15 frames/s, >= 10x the baseline.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

SIZE = 512
FRAMES = 50
CLASSIC_FRAMES = 3


def _frames(n: int) -> list[np.ndarray]:
    """A head-and-shoulders photo (scikit-image's astronaut) swaying a little: [n] x [S, S, 3]."""
    from skimage import data

    photo = data.astronaut()
    out = []
    for i in range(n):
        dx, dy = int(10 * np.sin(i / 6)), int(6 * np.sin(i / 9))
        crop = photo[12 + dy : 412 + dy, 40 + dx : 440 + dx]
        out.append(cv2.resize(crop, (SIZE, SIZE), interpolation=cv2.INTER_AREA))
    return out


def bench_default(frames: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    """frames/s of mesh + selfie segmentation + parsing; also the meshes (for the crops)."""
    from ernerf_core.media.face_mesh import MeshTracker
    from ernerf_core.preprocess.landmark_parsing import SelfieSegmenter, parse_frame

    meshes = []
    with MeshTracker() as tracker, SelfieSegmenter() as segmenter:
        tracker(frames[0]), segmenter(frames[0])  # warm: graph start-up is paid once per stage
        start = time.perf_counter()
        for rgb in frames:
            mesh, _ = tracker(rgb)
            parse_frame(rgb, mesh, segmenter(rgb))
            meshes.append(mesh)
        wall = time.perf_counter() - start
    return len(frames) / wall, meshes


def bench_classic(frames: list[np.ndarray], meshes: list[np.ndarray]) -> float:
    """frames/s of S3FD + FAN + BiSeNet forward passes with random weights."""
    import torch
    from face_alignment.detection.sfd.net_s3fd import s3fd
    from face_alignment.models import FAN

    from ernerf_core.preprocess.bisenet import BiSeNet

    torch.manual_seed(0)
    detector, fan, bisenet = s3fd().eval(), FAN(4).eval(), BiSeNet().eval()

    def one(rgb: np.ndarray, mesh: np.ndarray) -> None:
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
        x0, y0 = mesh[:, :2].min(0)
        x1, y1 = mesh[:, :2].max(0)
        c, half = ((x0 + x1) / 2, (y0 + y1) / 2), 0.65 * max(x1 - x0, y1 - y0)
        box = [int(max(0, c[1] - half)), int(c[1] + half), int(max(0, c[0] - half)), int(c[0] + half)]
        crop = cv2.resize(rgb[box[0] : box[1], box[2] : box[3]], (256, 256))
        with torch.no_grad():
            detector(x - torch.tensor([104.0, 117.0, 123.0]).view(1, 3, 1, 1))
            fan(torch.from_numpy(crop).permute(2, 0, 1)[None].float() / 255.0)
            bisenet(x / 255.0)

    one(frames[0], meshes[0])  # warm
    start = time.perf_counter()
    for rgb, mesh in zip(frames[:CLASSIC_FRAMES], meshes[:CLASSIC_FRAMES], strict=True):
        one(rgb, mesh)
    return CLASSIC_FRAMES / (time.perf_counter() - start)


def run() -> list[dict]:
    import torch

    frames = _frames(FRAMES)
    default_fps, meshes = bench_default(frames)
    classic_fps = bench_classic(frames, meshes)
    return [
        {
            "name": f"landmarks + parsing, default (MediaPipe mesh + selfie segm. + geometry), {SIZE}x{SIZE}",
            "frames_per_s": round(default_fps, 2),
            "baseline": "classic: face-alignment S3FD + FAN-4 + BiSeNet forwards, random weights",
            "baseline_frames_per_s": round(classic_fps, 3),
            "ratio": round(default_fps / classic_fps, 1),
            "torch_threads": torch.get_num_threads(),
            "target": "frames_per_s >= 15 and ratio >= 10",
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
