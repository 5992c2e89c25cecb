"""Stream RGB frames into ffmpeg: H.264 (yuv420p) with an audio track muxed in as AAC."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

import numpy as np

from ..media.ffmpeg import FFmpegError, ffmpeg_command


class H264Writer:
    """``with H264Writer(path, size, fps, audio_wav) as w: w.write(rgb)`` for each frame.

    Frames go to ffmpeg's stdin as raw rgb24 while ffmpeg encodes in its own process. The
    bitexact flags keep encoder version strings out of the file, so a seed gives the same
    bytes on the same ffmpeg build.
    """

    def __init__(self, path: str | os.PathLike, size: int, fps: float, audio_wav: str | os.PathLike,
                 crf: int = 18, preset: str = "medium"):
        self.path, self.size = Path(path), int(size)
        self.args = [
            "-y", "-loglevel", "error",
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.size}x{self.size}", "-r", str(fps),
            "-i", "pipe:0", "-i", str(audio_wav),
            "-map", "0:v:0", "-map", "1:a:0",
            "-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k",
            "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
            "-flags:a", "+bitexact", "-movflags", "+faststart",
            str(self.path),
        ]
        self.frames = 0

    def __enter__(self) -> H264Writer:
        self._stderr = tempfile.TemporaryFile()
        self.cmd = ffmpeg_command(self.args)
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=self._stderr)
        return self

    def write(self, rgb: np.ndarray) -> None:
        """rgb: [size, size, 3] uint8."""
        if rgb.shape != (self.size, self.size, 3) or rgb.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [{self.size}, {self.size}, 3], "
                             f"got {rgb.dtype} {rgb.shape}")
        try:
            self._proc.stdin.write(np.ascontiguousarray(rgb).tobytes())
        except BrokenPipeError:
            self._finish()  # ffmpeg died: raise with its stderr
            raise
        self.frames += 1

    def _finish(self) -> None:
        if self._proc.stdin and not self._proc.stdin.closed:
            try:
                self._proc.stdin.close()
            except BrokenPipeError:
                pass
        code = self._proc.wait()
        self._stderr.seek(0)
        stderr = self._stderr.read().decode("utf-8", "replace")
        self._stderr.close()
        if code != 0:
            raise FFmpegError(self.cmd, code, stderr)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self._finish()
        else:  # the caller failed: stop ffmpeg, keep the caller's exception
            self._proc.kill()
            self._proc.wait()
            self._stderr.close()
