"""Media I/O through ffmpeg: probing, frames, audio of any format."""

from .audio import NoAudioStreamError, load_audio, write_wav
from .ffmpeg import FFmpegError, MediaError, ffmpeg_exe, run_ffmpeg
from .frames import frame_count, frame_paths, read_rgb, write_jpg, write_png
from .probe import AudioStream, MediaInfo, VideoStream, probe

__all__ = [
    "AudioStream", "FFmpegError", "MediaError", "MediaInfo", "NoAudioStreamError", "VideoStream",
    "ffmpeg_exe", "frame_count", "frame_paths", "load_audio", "probe", "read_rgb", "run_ffmpeg",
    "write_jpg", "write_png", "write_wav",
]
