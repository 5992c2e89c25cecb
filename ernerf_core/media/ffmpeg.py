"""The ffmpeg binary and running it: the system ``ffmpeg`` when on PATH, else imageio-ffmpeg's.

Every ffmpeg call in the project goes through ``run_ffmpeg`` so a failure always carries the
command and the last lines of ffmpeg's stderr (the only place ffmpeg says what went wrong).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

STDERR_TAIL_LINES = 12
_CONTEXT_RE = re.compile(r"^\[[^\]]* @ (0x)?[0-9a-fA-F]+\]\s*")


class MediaError(RuntimeError):
    """A media file could not be read or written; ``detail`` is the short why (for one-line errors)."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail or message


class FFmpegError(MediaError):
    """ffmpeg exited with an error; ``stderr_tail`` holds its last stderr lines."""

    def __init__(self, args: Sequence[str], returncode: int, stderr: str):
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr
        self.stderr_tail = stderr_tail(stderr)
        super().__init__(f"ffmpeg failed (exit {returncode}): {self.stderr_tail or '(no stderr)'}"
                         f"\n  command: {' '.join(map(str, args))}",
                         detail=ffmpeg_messages(stderr) or f"ffmpeg exit {returncode}")


@dataclass(frozen=True)
class FFmpegResult:
    stdout: bytes
    stderr: str


@functools.cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: ``$ERNERF_FFMPEG``, the system one on PATH, else imageio-ffmpeg's."""
    forced = os.environ.get("ERNERF_FFMPEG")
    if forced:
        return forced
    system = shutil.which("ffmpeg")
    if system:
        return system
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def stderr_tail(stderr: str, lines: int = STDERR_TAIL_LINES) -> str:
    """The last non-empty stderr lines joined with ' | ' (short enough for a one-line error)."""
    kept = [line.strip() for line in stderr.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def ffmpeg_messages(stderr: str, limit: int = 2) -> str:
    """ffmpeg's own diagnostics (``[component @ 0x..] text`` lines) without the prefix: the last
    ``limit`` distinct ones joined with '; ' (e.g. "moov atom not found; Error opening input:
    Invalid data found when processing input"); the stderr tail when there are none."""
    found: list[str] = []
    for line in stderr.splitlines():
        m = _CONTEXT_RE.match(line)
        text = line[m.end():].strip() if m else ""
        if text and text not in found:
            found.append(text)
    return "; ".join(found[-limit:]) if found else stderr_tail(stderr, limit)


def ffmpeg_command(args: Sequence[str]) -> list[str]:
    """``ffmpeg -hide_banner -nostdin`` + args (args never start with the binary)."""
    return [ffmpeg_exe(), "-hide_banner", "-nostdin", *map(str, args)]


def run_ffmpeg(args: Sequence[str], *, check: bool = True,
               on_progress: Callable[[dict[str, str]], None] | None = None) -> FFmpegResult:
    """Run ffmpeg with ``args`` (without the binary); return its stdout bytes and stderr text.

    With ``on_progress``, ffmpeg's ``-progress`` key=value blocks (on stdout) are passed to it
    as they arrive; use it only when the output goes to files, not to ``pipe:1``.
    """
    cmd = ffmpeg_command(args)
    if on_progress is None:
        proc = subprocess.run(cmd, capture_output=True, check=False)
        stdout, stderr, code = proc.stdout, proc.stderr.decode("utf-8", "replace"), proc.returncode
    else:
        stdout, stderr, code = _run_with_progress(cmd, on_progress)
    if check and code != 0:
        raise FFmpegError(cmd, code, stderr)
    return FFmpegResult(stdout=stdout, stderr=stderr)


def _run_with_progress(cmd: list[str], on_progress: Callable[[dict[str, str]], None]
                       ) -> tuple[bytes, str, int]:
    cmd = [*cmd[:3], "-progress", "pipe:1", "-nostats", *cmd[3:]]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err_chunks: list[bytes] = []
    # stderr is drained on a thread so a chatty ffmpeg never blocks on a full pipe.
    reader = threading.Thread(target=lambda: err_chunks.append(proc.stderr.read()), daemon=True)
    reader.start()
    block: dict[str, str] = {}
    for raw in proc.stdout:
        key, _, value = raw.decode("utf-8", "replace").strip().partition("=")
        block[key] = value
        if key == "progress":  # each block ends with progress=continue|end
            on_progress(block)
            block = {}
    code = proc.wait()
    reader.join()
    return b"", b"".join(err_chunks).decode("utf-8", "replace"), code
