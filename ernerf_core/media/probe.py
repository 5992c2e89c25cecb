"""What a media file holds, read from ``ffmpeg -hide_banner -i FILE`` (there is no ffprobe here).

imageio-ffmpeg ships only the ffmpeg binary, so probing parses the stream summary ffmpeg
prints to stderr when given an input and no output. The parser keys on the stable parts of
that summary (``Input #0, <format>``, ``Duration:``, ``Stream #0:i: Video|Audio: ...``).
Sizes are the *displayed* size: ffmpeg auto-rotates on decode, so a 90 degree display
matrix swaps width and height, exactly as the decoded frames come out.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .ffmpeg import MediaError, ffmpeg_messages, run_ffmpeg

# Layout names ffmpeg prints -> channel count (anything else says "N channels").
_LAYOUT_CHANNELS = {
    "mono": 1, "stereo": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "3.1": 4, "4.0": 4, "quad": 4,
    "quad(side)": 4, "4.1": 5, "5.0": 5, "5.0(side)": 5, "5.1": 6, "5.1(side)": 6, "6.0": 6,
    "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7, "6.1(front)": 7, "7.0": 7,
    "7.0(front)": 7, "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8, "octagonal": 8, "downmix": 2,
}
_INPUT_RE = re.compile(r"^Input #0, (?P<format>.+?), from '", re.M)
_DURATION_RE = re.compile(r"Duration: (?P<dur>N/A|\d+:\d+:\d+(?:\.\d+)?)"
                          r"(?:, start: (?P<start>-?[\d.]+))?(?:, bitrate: (?P<br>\d+) kb/s)?")
_STREAM_RE = re.compile(r"^\s*Stream #0:(?P<index>\d+)\S*: (?P<kind>Video|Audio|Subtitle|Data|Attachment)"
                        r": (?P<rest>.*)$")
_SIZE_RE = re.compile(r"(?<![\w.\[])([1-9]\d{0,4})x([1-9]\d{0,4})(?!\w)")
_RATE_RE = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?)(k?) (fps|tbr)\b")
_SAR_RE = re.compile(r"\[SAR (\d+):(\d+) DAR")
_ROTATION_RE = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees", re.I)
_HZ_RE = re.compile(r"(\d+) Hz, ([^,]+)")


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int  # displayed (after rotation)
    height: int
    avg_fps: float | None  # ffmpeg's "fps": average frame rate
    real_fps: float | None  # ffmpeg's "tbr": the base rate timestamps are a multiple of
    rotation: float = 0.0  # display matrix, degrees
    sar: tuple[int, int] = (1, 1)  # sample (pixel) aspect ratio
    attached_pic: bool = False  # cover art in an audio file, not a video


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    sample_rate: int | None
    channels: int | None
    layout: str | None


@dataclass(frozen=True)
class MediaInfo:
    path: str
    format_name: str
    duration: float | None  # seconds (container), None when ffmpeg reports N/A
    start: float
    bitrate_kbps: int | None
    video_streams: list[VideoStream] = field(default_factory=list)
    audio_streams: list[AudioStream] = field(default_factory=list)

    @property
    def video(self) -> VideoStream | None:
        """The first real video stream (cover art is not a video)."""
        return next((v for v in self.video_streams if not v.attached_pic), None)

    @property
    def audio(self) -> AudioStream | None:
        return self.audio_streams[0] if self.audio_streams else None

    @property
    def variable_fps(self) -> bool:
        """Header hint: average rate differs from the timestamp base rate by more than 1 %."""
        v = self.video
        if v is None or not v.avg_fps or not v.real_fps:
            return False
        return abs(v.avg_fps - v.real_fps) > 0.01 * v.real_fps

    def to_dict(self) -> dict[str, Any]:
        """The facts a manifest records about a source file."""
        v, a = self.video, self.audio
        return {
            "path": self.path,
            "format": self.format_name,
            "duration": self.duration,
            "start": self.start,
            "bitrate_kbps": self.bitrate_kbps,
            "video": asdict(v) if v else None,
            "audio": asdict(a) if a else None,
            "variable_fps_hint": self.variable_fps,
        }


def probe(path: str | os.PathLike) -> MediaInfo:
    """Streams, codecs, sizes, frame rates and duration of ``path``.

    Raises FileNotFoundError for a missing path and MediaError when ffmpeg cannot open it
    (empty, not media, unknown format, unreadable header).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    # Without an output ffmpeg always exits 1 after printing the summary: success is the summary.
    stderr = run_ffmpeg(["-i", str(path)], check=False).stderr
    return parse_probe(stderr, path)


def parse_probe(stderr: str, path: str | os.PathLike = "") -> MediaInfo:
    head = _INPUT_RE.search(stderr)
    if head is None:
        detail = ffmpeg_messages(stderr)
        raise MediaError(f"{path}: ffmpeg cannot read it as media: {detail}", detail=detail)
    duration = start = bitrate = None
    dur = _DURATION_RE.search(stderr)
    if dur:
        duration = _hms_seconds(dur["dur"])
        start = float(dur["start"]) if dur["start"] else None
        bitrate = int(dur["br"]) if dur["br"] else None
    videos: list[VideoStream] = []
    audios: list[AudioStream] = []
    lines = stderr.splitlines()
    for i, line in enumerate(lines):
        m = _STREAM_RE.match(line)
        if not m:
            continue
        kind, rest, index = m["kind"], m["rest"], int(m["index"])
        codec = rest.split(" ", 1)[0].rstrip(",")
        if kind == "Video":
            videos.append(_video_stream(index, codec, rest, _stream_block(lines, i)))
        elif kind == "Audio":
            audios.append(_audio_stream(index, codec, rest))
    return MediaInfo(path=os.fspath(path), format_name=head["format"], duration=duration,
                     start=start or 0.0, bitrate_kbps=bitrate, video_streams=videos,
                     audio_streams=audios)


def _hms_seconds(text: str) -> float | None:
    if text == "N/A":
        return None
    h, m, s = text.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _stream_block(lines: list[str], i: int) -> str:
    """The indented metadata / side-data lines that follow stream line ``i``."""
    block = []
    for line in lines[i + 1:]:
        if _STREAM_RE.match(line) or not line.startswith("    "):
            break
        block.append(line)
    return "\n".join(block)


def _video_stream(index: int, codec: str, rest: str, block: str) -> VideoStream:
    size = _SIZE_RE.search(rest)
    width, height = (int(size[1]), int(size[2])) if size else (0, 0)
    rates = {unit: float(value) * (1000 if k else 1) for value, k, unit in _RATE_RE.findall(rest)}
    rot = _ROTATION_RE.search(block)
    rotation = float(rot[1]) if rot else 0.0
    if round(abs(rotation)) % 180 == 90:
        width, height = height, width
    sar = _SAR_RE.search(rest)
    return VideoStream(index=index, codec=codec, width=width, height=height,
                       avg_fps=rates.get("fps"), real_fps=rates.get("tbr"), rotation=rotation,
                       sar=(int(sar[1]), int(sar[2])) if sar else (1, 1),
                       attached_pic="(attached pic)" in rest)


def _audio_stream(index: int, codec: str, rest: str) -> AudioStream:
    hz = _HZ_RE.search(rest)
    if not hz:
        return AudioStream(index=index, codec=codec, sample_rate=None, channels=None, layout=None)
    layout = hz[2].strip()
    channels = _LAYOUT_CHANNELS.get(layout)
    if channels is None:
        n = re.match(r"(\d+) channels", layout)
        channels = int(n[1]) if n else None
    return AudioStream(index=index, codec=codec, sample_rate=int(hz[1]), channels=channels,
                       layout=layout)
