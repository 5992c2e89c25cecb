"""Demo subject generation speed (frames/s) at the default 512 x 512 and the test size.

Baselines, run in the same process: for rendering, one full-frame ``cv2.remap`` of the
photo (the least a warp-based renderer must do per frame); for the whole stage, encoding
the same number of still frames through the same H.264 writer (the least the stage must
do per frame).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

FRAMES = 100


def _per_second(fn, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def _render_row(size: int) -> dict:
    from ernerf_core.demo.head_render import HeadRenderer
    from ernerf_core.demo.motion import make_motion
    from ernerf_core.demo.rig import build_rig

    rig = build_rig()
    renderer = HeadRenderer(rig, size)
    motion = make_motion(FRAMES, 25, seed=0)
    mouth = 0.5 + 0.5 * np.sin(np.arange(FRAMES) / 3.0)

    def render(i: int) -> None:
        renderer.render(motion.rotation[i].astype(np.float64), rig.origin_cam + motion.offset[i],
                        float(mouth[i]), float(motion.blink[i]))

    photo = cv2.resize(rig.photo, (size, size), interpolation=cv2.INTER_AREA)
    grid = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32))

    def remap(i: int) -> None:
        cv2.remap(photo, grid[0] + 0.25, grid[1], cv2.INTER_LINEAR)

    fps, base = _per_second(render, FRAMES), _per_second(remap, FRAMES)
    return {"measure": f"render frame {size}x{size}", "unit": "frames/s", "value": round(fps, 1),
            "baseline": "one full-frame cv2.remap", "baseline_value": round(base, 1),
            "ratio": round(fps / base, 4)}


def _stage_row(size: int, seconds: float) -> dict:
    import soundfile as sf

    from ernerf_core.demo import FPS, make_demo_subject
    from ernerf_core.demo.rig import build_rig
    from ernerf_core.demo.speech import DEMO_SPEECH, SAMPLE_RATE, fit_length, load_clip
    from ernerf_core.media.video import VideoWriter

    build_rig()  # built once per process; not part of the per-frame rate
    n = int(round(seconds * FPS))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        start = time.perf_counter()
        make_demo_subject(out / "demo.mp4", out / "truth.npz", out / "drive.wav", out / "demo.json",
                          size=size, seconds=seconds, seed=0)
        fps = n / (time.perf_counter() - start)

        wav = out / "speech.wav"
        sf.write(str(wav), fit_length(load_clip(DEMO_SPEECH), seconds), SAMPLE_RATE)
        still = cv2.resize(build_rig().photo, (size, size), interpolation=cv2.INTER_AREA)
        start = time.perf_counter()
        with VideoWriter(out / "still.mp4", size, size, fps=FPS, n_frames=n, audio=wav) as writer:
            for _ in range(n):
                writer.write(still)
        base = n / (time.perf_counter() - start)
    return {"measure": f"make_demo_subject {size}x{size}, {seconds:g} s", "unit": "frames/s",
            "value": round(fps, 1), "baseline": "encode still frames (same writer)",
            "baseline_value": round(base, 1), "ratio": round(fps / base, 4)}


def run() -> list[dict]:
    return [_render_row(512), _render_row(192), _stage_row(512, 4.0)]
