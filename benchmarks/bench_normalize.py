"""normalize throughput on a 10 s 1280x720 30 fps clip, against a plain ffmpeg decode of it.

The baseline is the least any normalisation must do (decode every source frame); the ratio
says what face sampling, the 25 fps crop/scale pass, JPEG writing and audio cost on top.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
from skimage import data as skdata

from ernerf_core.media import run_ffmpeg, write_png
from ernerf_core.preprocess.normalize import normalize

SECONDS = 10
SOURCE_FPS = 30
WIDTH, HEIGHT = 1280, 720
RESOLUTION = 512


def make_clip(folder: Path) -> Path:
    """The astronaut photo (face ~190 px) drifting inside a 1280x720 frame, H.264 + AAC stereo."""
    photo = folder / "face.png"
    write_png(photo, cv2.resize(skdata.astronaut(), (700, 700), interpolation=cv2.INTER_AREA))
    clip = folder / "clip720p30.mp4"
    run_ffmpeg([
        "-loglevel", "error", "-y", "-loop", "1", "-framerate", str(SOURCE_FPS), "-i", str(photo),
        "-f", "lavfi", "-i", "sine=f=220:sample_rate=48000", "-t", str(SECONDS), "-ac", "2",
        "-vf", f"pad={WIDTH + 200}:{HEIGHT + 100}:250:20,"
               f"crop={WIDTH}:{HEIGHT}:'100+40*sin(t)':'50+20*sin(1.3*t)'",
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(clip),
    ])
    return clip


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench_normalize_") as tmp:
        folder = Path(tmp)
        clip = make_clip(folder)
        source_frames = SECONDS * SOURCE_FPS
        decode_s = timed(lambda: run_ffmpeg(["-loglevel", "error", "-i", str(clip), "-map", "0:v:0",
                                             "-f", "null", "-"]))
        manifest: dict = {}

        def go() -> None:
            data = folder / "data"
            manifest.update(normalize(subject="bench", video=clip, frames_dir=data / "ori_imgs",
                                      audio_path=data / "aud.wav",
                                      manifest_path=folder / "manifests" / "normalize.json",
                                      resolution=RESOLUTION))

        go()  # warm-up: MediaPipe model load and page cache are not what is measured
        normalize_s = timed(go)
    out_frames = manifest["frames"]
    return [{
        "what": f"normalize {WIDTH}x{HEIGHT} {SOURCE_FPS} fps {SECONDS} s -> {out_frames} frames "
                f"at {RESOLUTION}px",
        "seconds": round(normalize_s, 3),
        "frames_per_s": round(out_frames / normalize_s, 1),
        "baseline": "ffmpeg decode only (-f null)",
        "baseline_seconds": round(decode_s, 3),
        "baseline_frames_per_s": round(source_frames / decode_s, 1),
        "ratio_time_vs_decode": round(normalize_s / decode_s, 2),
    }]


if __name__ == "__main__":
    for row in run():
        print(row)
