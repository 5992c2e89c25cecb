"""Media I/O through ffmpeg: probing, frames, audio of any format."""
