"""Streaming H.264 writer: RGB frames go to ffmpeg's stdin as they are rendered.

Holding a long video in memory is what blows up audio-driven rendering, so frames are
piped one at a time. The output plays in browsers: H.264 (libx264), yuv420p, even
width/height (padded by one pixel when odd), 25 fps, ``+faststart`` (index at the front),
AAC audio. The audio is cut from ``audio_start`` seconds and trimmed, or padded with
silence, to exactly ``n_frames / fps`` seconds: the frame count is given up front because
ffmpeg's ``-shortest`` lets the audio run ahead of frames that arrive slowly (a CPU render),
leaving seconds of extra audio. Written under a temporary name and
renamed when ffmpeg succeeds, so a killed render never leaves a playable-looking file.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import threading
from pathlib import Path

import numpy as np

from ..fsio import atomic_file
from ..media.ffmpeg import FFmpegError, ffmpeg_command, run_ffmpeg
from ..media.probe import probe

FPS = 25


def encode_args(width: int, height: int, out: str | os.PathLike, *, fps: int = FPS,
                audio: str | os.PathLike | None = None, audio_start: float = 0.0, n_frames: int | None = None,
                crf: int = 18, preset: str = "medium") -> list[str]:
    """ffmpeg arguments (without the binary) reading rgb24 frames from stdin.

    With ``audio``, ``n_frames`` (the frames that will be written) fixes the audio's length.
    """
    args = ["-loglevel", "error", "-y",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", str(fps),
            "-i", "pipe:0"]
    if audio is not None:
        # -ss before -i seeks the input; wav seeking is sample exact.
        args += ["-ss", f"{max(0.0, audio_start):.6f}", "-i", os.fspath(audio)]
    args += ["-map", "0:v:0",
             "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2",
             "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
             "-r", str(fps), "-movflags", "+faststart"]
    if audio is not None:
        if not n_frames or n_frames < 1:
            raise ValueError("n_frames (>= 1) is needed to cut the audio to the video's length")
        seconds = n_frames / fps
        args += ["-map", "1:a:0", "-af", f"atrim=end={seconds:.6f},apad=whole_dur={seconds:.6f}",
                 "-c:a", "aac", "-b:a", "128k", "-ar", "44100", "-ac", "1"]
    # bitexact: no encoder version strings, so the same frames give the same bytes
    args += ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
    return [*args, os.fspath(out)]


class VideoWriter:
    """``with VideoWriter(path, w, h, n_frames=n, audio=...) as vw: vw.write(frame)``, frames
    [H, W, 3] uint8 RGB. With ``n_frames`` exactly that many frames must be written (needed
    with audio)."""

    def __init__(self, path: str | os.PathLike, width: int, height: int, *, fps: int = FPS,
                 n_frames: int | None = None, audio: str | os.PathLike | None = None,
                 audio_start: float = 0.0, crf: int = 18, preset: str = "medium"):
        if audio is not None and not (n_frames and n_frames >= 1):
            raise ValueError("n_frames (>= 1) is needed to cut the audio to the video's length")
        self.path, self.width, self.height = Path(path), int(width), int(height)
        self.n_frames = n_frames
        self.frames_written = 0
        self._options = dict(fps=fps, audio=audio, audio_start=audio_start, n_frames=n_frames, crf=crf,
                             preset=preset)
        self._stack = contextlib.ExitStack()
        self._proc: subprocess.Popen | None = None
        self._stderr: list[bytes] = []

    def __enter__(self) -> VideoWriter:
        tmp = self._stack.enter_context(atomic_file(self.path))
        cmd = ffmpeg_command(encode_args(self.width, self.height, tmp, **self._options))
        # ffmpeg_command adds -nostdin; it only disables interactive keys, stdin frames still flow.
        self._cmd = cmd
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        # drain stderr on a thread so ffmpeg never blocks on a full pipe
        self._reader = threading.Thread(target=lambda: self._stderr.append(self._proc.stderr.read()),
                                        daemon=True)
        self._reader.start()
        return self

    def write(self, frame: np.ndarray) -> None:
        """Append one frame [H, W, 3] uint8 RGB."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [{self.height}, {self.width}, 3], "
                             f"got {frame.dtype} {list(frame.shape)}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(frame).tobytes())
        except BrokenPipeError:
            self._finish()  # raises with ffmpeg's own message
            raise
        self.frames_written += 1

    def _finish(self) -> None:
        proc = self._proc
        if proc.stdin and not proc.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        code = proc.wait()
        self._reader.join()
        if code != 0:
            raise FFmpegError(self._cmd, code, b"".join(self._stderr).decode("utf-8", "replace"))

    def _abort(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._reader.join()

    def __exit__(self, exc_type, exc, tb) -> None:
        done = False
        try:
            if exc_type is None:
                if self.frames_written == 0:
                    raise ValueError(f"{self.path}: no frames were written")
                if self.n_frames is not None and self.frames_written != self.n_frames:
                    raise ValueError(f"{self.path}: {self.frames_written} frames written, {self.n_frames} announced")
                self._finish()
                done = True
        finally:
            if done:
                self._stack.close()  # rename the finished file into place
            else:
                self._abort()
                aborted = RuntimeError("video writing aborted")
                self._stack.__exit__(RuntimeError, aborted, None)  # removes the temporary file


def inspect_video(path: str | os.PathLike) -> dict:
    """What a written video holds: codec, pix_fmt, size, fps, decoded frame count, audio codec.

    Used to check (and record in manifests) that an output plays in browsers.
    """
    info = probe(path)
    v = info.video
    if v is None:
        raise FFmpegError(["-i", os.fspath(path)], 1, "no video stream")
    stream_line = next((ln for ln in run_ffmpeg(["-i", os.fspath(path)], check=False).stderr.splitlines()
                        if "Video:" in ln), "")
    pix = re.search(r"\b(yuv\w+|rgb\w+|gray\w*|nv12)\b", stream_line)
    decoded = run_ffmpeg(["-i", os.fspath(path), "-map", "0:v:0", "-f", "null", "-"]).stderr
    counts = re.findall(r"frame=\s*(\d+)", decoded)
    return {
        "codec": v.codec, "pix_fmt": pix[1] if pix else None, "width": v.width, "height": v.height,
        "fps": v.avg_fps, "frames": int(counts[-1]) if counts else 0, "duration": info.duration,
        "audio_codec": info.audio.codec if info.audio else None,
        "faststart": _moov_before_mdat(path),
    }


def _moov_before_mdat(path: str | os.PathLike) -> bool:
    """True when the MP4 index (moov) precedes the media data, so browsers can start playing."""
    with open(path, "rb") as f:
        pos = 0
        while True:
            header = f.read(8)
            if len(header) < 8:
                return False
            size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            if size == 1:  # 64-bit size follows
                size = int.from_bytes(f.read(8), "big")
                pos += size
            else:
                pos += size
            if size < 8:
                return False
            f.seek(pos)
