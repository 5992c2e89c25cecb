"""Stage ``normalize``: any talking-head video -> 25 fps square face-centred frames + 16 kHz audio.

Output is the start of the ER-NeRF subject folder: ``ori_imgs/<i>.jpg`` (numbered from 0,
``resolution`` x ``resolution``) and ``aud.wav`` (16 kHz mono 16-bit), aligned so that frame
``i`` shows time ``i / 25`` s and the audio lasts exactly ``N / 25`` s.

The crop is one fixed square for the whole clip (the reference trains on a static camera):
MediaPipe face detection on about one frame per second (5-30 samples, a face in at least
30 % of them) gives the median face centre and box size; the square is ``crop_scale`` x
the box, centred on the face. The default 2.4 keeps hair, neck and the top of the
shoulders of a typical talking-head frame. When that square does not fit in the frame it
is shrunk to the frame's shorter side and slid inside (``crop_shrunk`` in the manifest).
The crop is recorded in source pixels (continuous, pixel-edge coordinates of the displayed,
auto-rotated frame), so source points map as ``p_norm = (p_src - [x, y]) * resolution / size``.

Frames come from a single ffmpeg pass: ``fps=25`` (timestamp based, so variable frame rate
sources come out right), exact crop, lanczos scale, JPEG written directly.

Questionable but workable input gives a warning in the log and in the manifest's
``warnings`` list (one line each) instead of an error: more than one face in the sampled
frames (the crop follows the largest; ``face.multi_face_samples`` counts the samples), and
a silent audio track (below ``SILENT_DBFS``: the mouth cannot learn from it).
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg  # ffmpeg-python: builds the filter graph; our run_ffmpeg runs it
import numpy as np

from ..errors import StageError
from ..fsio import atomic_dir, write_manifest
from ..media.audio import load_audio, write_wav
from ..media.ffmpeg import FFmpegError, MediaError, ffmpeg_exe, ffmpeg_messages, run_ffmpeg
from ..media.frames import frame_count
from ..media.probe import MediaInfo, probe
from ..progress import progress

STAGE = "normalize"
FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640
JPEG_QSCALE = 2  # ffmpeg mjpeg -q:v: 2 is the best practical quality (~cv2 quality 95+)
SUBJECT_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_FACE_SAMPLES = 30
MIN_FACE_SAMPLES = 5  # short clips still get several looks at the face
DETECT_MAX_SIDE = 640  # samples are downscaled to this for detection (MediaPipe runs at 192-256)
MIN_DETECTION_SCORE = 0.5
MIN_FACE_SHARE = 0.3  # of sampled frames that must show a face
SILENT_DBFS = -60.0  # RMS of the whole track below this: a silent recording
# Frames the video track may fall short of the container's duration without comment
# (audio priming / last-frame rounding); beyond this it is a shorter video track or damage.
FRAME_SHORTFALL_OK = 3
AUDIO_SHORTFALL_MAX_S = 1.0  # longer than this without audio is refused, not padded
_DECODE_ERROR_RE = re.compile(r"error while decoding|partial file|invalid nal|corrupt|truncat"
                              r"|invalid data found|missing picture|concealing", re.I)
_VFRDET_RE = re.compile(r"VFR:([\d.]+) \((\d+)/(\d+)\)")

log = logging.getLogger("ernerf.normalize")


@dataclass(frozen=True)
class FaceBox:
    """Median face over the sampled frames, in source pixels."""

    cx: float
    cy: float
    size: float  # median of max(box width, box height)
    samples: int
    found: int
    multi: int = 0  # samples that showed more than one face


@dataclass(frozen=True)
class SquareCrop:
    x: int
    y: int
    size: int
    shrunk: bool  # crop_scale x face did not fit and was reduced to the frame's shorter side


def check_subject(subject: str) -> None:
    """Subject names become folder names and wildcards: letters, digits, ``_`` and ``-`` only."""
    if not isinstance(subject, str) or not SUBJECT_RE.match(subject):
        raise StageError(
            repr(subject)[:80], STAGE, f"subject name {subject!r} is not a safe identifier",
            "use 1-64 characters: a letter first, then letters, digits, '_' or '-' "
            "(for example 'obama' or 'may_2024')")


def normalize(subject: str, video: str | os.PathLike, frames_dir: str | os.PathLike,
              audio_path: str | os.PathLike, manifest_path: str | os.PathLike,
              resolution: int = 512, crop_scale: float = 2.4, min_seconds: float = 2.0
              ) -> dict[str, Any]:
    """Normalise ``video`` into ``frames_dir`` (JPEGs), ``audio_path`` (WAV) and the manifest."""
    check_subject(subject)
    video, frames_dir, audio_path = Path(video), Path(frames_dir), Path(audio_path)
    manifest_path = Path(manifest_path)
    # A stale manifest beside outputs we are about to replace would look finished.
    manifest_path.unlink(missing_ok=True)
    params = {"resolution": int(resolution), "crop_scale": float(crop_scale),
              "min_seconds": float(min_seconds)}
    if not (16 <= params["resolution"] <= 4096 and 0.5 <= params["crop_scale"] <= 10
            and params["min_seconds"] >= 0):
        raise StageError(subject, STAGE, f"parameters out of range: {params}",
                         "use resolution 16-4096, crop_scale 0.5-10 and min_seconds >= 0")

    info = _probe_source(subject, video, min_seconds)
    audio = _decode_audio(subject, video, info)
    face = detect_face(subject, video, info)
    warnings = []
    if face.multi:
        warnings.append(f"{face.multi} of {face.samples} sampled frames show more than one face: the crop "
                        "follows the largest; check preview/contact_sheet.png shows the right person")
    level = _dbfs(audio)
    if level < SILENT_DBFS:
        warnings.append(f"the audio track is silent ({level:.0f} dBFS): the mouth will not follow speech; "
                        "use a recording with the subject speaking")
    for warning in warnings:
        log.warning("[%s] %s: %s", subject, STAGE, warning)
    crop = square_crop(face, crop_scale, info.video.width, info.video.height)
    log.info("%s: %dx%d %.2fs, face at (%.0f, %.0f) size %.0f in %d/%d samples, crop %s",
             video.name, info.video.width, info.video.height, info.duration, face.cx, face.cy,
             face.size, face.found, face.samples, crop)

    expected = int(math.floor(info.duration * FPS + 0.5))
    with atomic_dir(frames_dir) as tmp_frames:
        stderr = _write_frames(subject, video, info, crop, int(resolution), expected, tmp_frames)
        n = _checked_frame_count(subject, video, tmp_frames, expected, stderr, min_seconds)
        audio, audio_fit = _fit_audio(subject, audio, n)
        write_wav(audio_path, audio, SAMPLE_RATE)

    source = info.to_dict()
    source["size_bytes"] = video.stat().st_size
    vfr = _VFRDET_RE.search(stderr)
    if vfr:  # measured on every decoded frame by the vfrdet filter
        source["vfr_ratio"] = float(vfr[1])
        source["variable_fps"] = float(vfr[1]) > 0.0
    else:
        source["variable_fps"] = info.variable_fps
    return write_manifest(
        manifest_path, stage=STAGE, subject=subject, params=params,
        frames=n, fps=FPS, resolution=int(resolution), sample_rate=SAMPLE_RATE,
        duration=n / FPS, audio_samples=len(audio), audio_fit=audio_fit,
        source=source,
        crop={"x": crop.x, "y": crop.y, "size": crop.size},
        crop_shrunk=crop.shrunk,
        face={"center": [face.cx, face.cy], "size": face.size, "samples": face.samples,
              "found": face.found, "multi_face_samples": face.multi, "detector": "mediapipe face_detection"},
        audio_dbfs=round(level, 1) if math.isfinite(level) else None,
        warnings=warnings,
        ffmpeg=ffmpeg_exe(),
    )


def _dbfs(audio: np.ndarray) -> float:
    """RMS level of the track in dB full scale (-inf for digital silence)."""
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _probe_source(subject: str, video: Path, min_seconds: float) -> MediaInfo:
    if not video.is_file():
        raise StageError(subject, STAGE, f"video {video} does not exist",
                         "check the subject's 'video' path in the config (relative paths are "
                         "from the directory snakemake runs in)")
    if video.stat().st_size == 0:
        raise StageError(subject, STAGE, f"video {video} is empty (0 bytes)",
                         "the copy or download failed; copy the video again")
    try:
        info = probe(video)
    except MediaError as err:
        raise StageError(subject, STAGE, f"{video} is not a readable video or is damaged "
                         f"(ffmpeg: {_short(err.detail)})",
                         "check it plays, or re-export it as MP4 (H.264 + AAC)") from None
    if info.video is None:
        what = "an audio-only file" if info.audio else "a file without video"
        raise StageError(subject, STAGE, f"{video} is {what}: it has no video stream",
                         "give the talking-head video itself, not its soundtrack")
    if info.audio is None:
        raise StageError(subject, STAGE, f"{video} has no audio track",
                         "use the original recording with its sound (ER-NeRF learns from the "
                         "speech), or mux one in: ffmpeg -i video -i speech.wav -c:v copy out.mp4")
    if info.video.width <= 0 or info.video.height <= 0:
        raise StageError(subject, STAGE, f"cannot read the frame size of {video}",
                         "re-export it as MP4 (H.264 + AAC)")
    if info.duration is None:
        raise StageError(subject, STAGE, f"{video} does not state its duration (a raw stream?)",
                         "remux it into a container: ffmpeg -i in -c copy out.mp4")
    if info.duration < min_seconds:
        raise StageError(subject, STAGE, f"{video} lasts {info.duration:.2f} s, shorter than "
                         f"min_seconds = {min_seconds:g} s",
                         "use a longer clip (ER-NeRF needs minutes of speech for a good model)")
    if info.video.sar[0] != info.video.sar[1]:
        log.warning("%s has non-square pixels (SAR %d:%d); the crop is square in stored pixels",
                    video, *info.video.sar)
    return info


def _decode_audio(subject: str, video: Path, info: MediaInfo) -> np.ndarray:
    try:
        return load_audio(video, SAMPLE_RATE, info=info)  # [T] float32
    except MediaError as err:
        raise StageError(subject, STAGE, f"cannot decode the audio of {video} "
                         f"(ffmpeg: {_short(err.detail)})",
                         "the file is damaged or truncated; re-export or copy it again") from None


def detect_face(subject: str, video: Path, info: MediaInfo) -> FaceBox:
    """Median face centre and size over ~1 frame per second (between 5 and 30 samples)."""
    frames, scale = _sample_frames(subject, video, info)  # [S, h, w, 3] uint8, px per source px
    centres, sizes, multi = [], [], 0
    for frame in frames:
        box, count = _largest_face(frame)
        multi += count > 1
        if box is not None:
            x, y, w, h = (v / scale for v in box)
            centres.append((x + w / 2, y + h / 2))
            sizes.append(max(w, h))
    if not centres:
        raise StageError(subject, STAGE, f"no face found in {len(frames)} frames sampled from {video}",
                         "use a video where one face is visible, frontal and at least ~40 px tall")
    # A talking head shows its face nearly all the time; a rare hit is a false detection.
    if len(centres) < MIN_FACE_SHARE * len(frames):
        raise StageError(subject, STAGE, f"a face was found in only {len(centres)} of {len(frames)} "
                         f"frames sampled from {video}",
                         "use a clip where the face is visible throughout (cut the other parts out)")
    if len(centres) < len(frames) / 2:
        log.warning("a face was found in only %d of %d sampled frames", len(centres), len(frames))
    cx, cy = np.median(np.asarray(centres), axis=0)
    return FaceBox(cx=float(cx), cy=float(cy), size=float(np.median(sizes)),
                   samples=len(frames), found=len(centres), multi=multi)


def _sample_frames(subject: str, video: Path, info: MediaInfo) -> tuple[np.ndarray, float]:
    v = info.video
    count = min(MAX_FACE_SAMPLES, max(MIN_FACE_SAMPLES, math.ceil(info.duration)))
    scale = min(1.0, DETECT_MAX_SIDE / max(v.width, v.height))
    w, h = max(1, round(v.width * scale)), max(1, round(v.height * scale))
    # Samples at the middle of `count` equal slices (not the first frame, often a fade-in):
    # seek half a slot in, then take frames at fps=count/duration. Detection needs no
    # particular frame, so the decoder skips non-reference frames and deblocking (~2x faster).
    rate = count / info.duration
    try:
        out = run_ffmpeg([
            "-loglevel", "error", "-skip_frame:v", "noref", "-skip_loop_filter:v", "all",
            "-ss", f"{0.5 / rate:.6f}", "-i", str(video),
            "-map", f"0:{v.index}", "-an", "-sn",
            "-vf", f"fps={rate:.6f},scale={w}:{h}:flags=area",
            "-frames:v", str(count), "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1",
        ]).stdout
    except FFmpegError as err:
        raise StageError(subject, STAGE, f"cannot decode the video of {video} "
                         f"(ffmpeg: {_short(err.detail)})",
                         "the file is damaged or truncated; re-export or copy it again") from None
    frame_bytes = w * h * 3
    if len(out) < frame_bytes or len(out) % frame_bytes:
        raise StageError(subject, STAGE, f"decoding {video} gave {len(out)} bytes, not whole "
                         f"{w}x{h} frames", "re-export it as MP4 (H.264 + AAC)")
    return np.frombuffer(out, np.uint8).reshape(-1, h, w, 3), scale


_detectors: dict[int, Any] = {}


def _detector(model_selection: int):
    """MediaPipe face detection, kept for the process (creation loads the TFLite model)."""
    if model_selection not in _detectors:
        import mediapipe as mp

        _detectors[model_selection] = mp.solutions.face_detection.FaceDetection(
            model_selection=model_selection, min_detection_confidence=MIN_DETECTION_SCORE)
    return _detectors[model_selection]


def _largest_face(rgb: np.ndarray) -> tuple[tuple[float, float, float, float] | None, int]:
    """((x, y, w, h) in pixels of the largest face in ``rgb`` [H, W, 3], or None; faces found).

    The full-range model (1) finds small and mid-size faces; the short-range model (0) is
    tried when it finds none, because it is better on faces filling the frame.
    """
    H, W = rgb.shape[:2]
    for model in (1, 0):
        result = _detector(model).process(np.ascontiguousarray(rgb))
        boxes = [d.location_data.relative_bounding_box for d in (result.detections or [])]
        if boxes:
            b = max(boxes, key=lambda b: b.width * b.height)
            return (b.xmin * W, b.ymin * H, b.width * W, b.height * H), len(boxes)
    return None, 0


def square_crop(face: FaceBox, crop_scale: float, width: int, height: int) -> SquareCrop:
    """The square ``crop_scale`` x face size centred on the face, moved/shrunk to fit the frame."""
    want = crop_scale * face.size
    size = int(round(min(want, width, height)))
    x = int(round(np.clip(face.cx - size / 2, 0, width - size)))
    y = int(round(np.clip(face.cy - size / 2, 0, height - size)))
    return SquareCrop(x=x, y=y, size=size, shrunk=want > min(width, height) + 0.5)


def _write_frames(subject: str, video: Path, info: MediaInfo, crop: SquareCrop, resolution: int,
                  expected: int, out_dir: Path) -> str:
    """One ffmpeg pass: 25 fps by timestamps -> exact crop -> lanczos scale -> JPEG files."""
    stream = (
        ffmpeg.input(str(video))[str(info.video.index)]
        .filter("vfrdet")  # measures, does not change frames: the manifest's variable_fps
        .filter("fps", fps=FPS, start_time=0)  # start_time=0 pads a late-starting video track
        .filter("crop", crop.size, crop.size, crop.x, crop.y, exact=1)
        .filter("scale", resolution, resolution, flags="lanczos+accurate_rnd+full_chroma_int",
                out_range="full")
        .filter("format", "yuv444p")
        .output(str(out_dir / "%d.jpg"), f="image2", vcodec="mjpeg", start_number=0,
                color_range="pc", **{"q:v": JPEG_QSCALE, "frames:v": expected})
    )
    args = stream.compile(cmd=ffmpeg_exe())[1:]
    with progress(desc=f"{subject} normalize", total=expected, unit="frame") as bar:
        def on_progress(block: dict[str, str]) -> None:
            done = block.get("frame", "0")
            bar.update(max(0, int(done) - bar.n) if done.isdigit() else 0)

        try:
            return run_ffmpeg(args, on_progress=on_progress).stderr
        except FFmpegError as err:
            raise StageError(subject, STAGE, f"ffmpeg could not convert {video} "
                             f"({_short(err.detail)})",
                             "the file is damaged or truncated; re-export or copy it again") from None


def _checked_frame_count(subject: str, video: Path, frames_dir: Path, expected: int, stderr: str,
                         min_seconds: float) -> int:
    n = frame_count(frames_dir)
    if n >= expected - FRAME_SHORTFALL_OK:
        return n
    # Only ffmpeg's own "[component @ 0x..]" messages: the summary lines carry file names.
    damaged = [line for line in stderr.splitlines()
               if line.startswith("[") and _DECODE_ERROR_RE.search(line)]
    if damaged or n == 0:
        detail = _short(ffmpeg_messages(damaged[-1])) if damaged else "no frame decoded"
        raise StageError(subject, STAGE, f"{video} is damaged or truncated: {n} of {expected} "
                         f"frames decoded ({detail})", "re-export or copy the file again")
    log.warning("video track ends after %.2f s but the file lasts %.2f s: using %d frames",
                n / FPS, expected / FPS, n)
    if n / FPS < min_seconds:
        raise StageError(subject, STAGE, f"the video track of {video} lasts {n / FPS:.2f} s, "
                         f"shorter than min_seconds = {min_seconds:g} s", "use a longer clip")
    return n


def _fit_audio(subject: str, audio: np.ndarray, n: int) -> tuple[np.ndarray, dict[str, float]]:
    """Pad with silence or trim ``audio`` [T] to exactly n / 25 s."""
    want = n * SAMPLES_PER_FRAME
    short = want - len(audio)
    if short > AUDIO_SHORTFALL_MAX_S * SAMPLE_RATE:
        raise StageError(subject, STAGE, f"the audio track lasts {len(audio) / SAMPLE_RATE:.2f} s "
                         f"but the video {n / FPS:.2f} s",
                         "use a recording whose sound covers the whole video, or cut the video "
                         "to the part with sound")
    fitted = np.pad(audio, (0, short)) if short > 0 else audio[:want]
    return fitted.astype(np.float32), {"padded_seconds": max(short, 0) / SAMPLE_RATE,
                                       "trimmed_seconds": max(-short, 0) / SAMPLE_RATE}


def _short(text: str, limit: int = 200) -> str:
    """An ffmpeg diagnostic cut to fit a one-line StageError."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(STAGE, help="video -> 25 fps face-centred frames + 16 kHz audio",
                              description=__doc__.splitlines()[0])
    p.add_argument("--subject", required=True, help="subject name (letters, digits, _ and -)")
    p.add_argument("--video", required=True, help="source video (any container / fps / size)")
    p.add_argument("--out", required=True,
                   help="subject data folder: writes ori_imgs/ and aud.wav there, and "
                        "../manifests/normalize.json")
    p.add_argument("--resolution", type=int, default=512, help="output frame side (default 512)")
    p.add_argument("--crop-scale", type=float, default=2.4,
                   help="square side / face box side (default 2.4: head and shoulders)")
    p.add_argument("--min-seconds", type=float, default=2.0,
                   help="refuse videos shorter than this (default 2)")
    p.set_defaults(func=_run_cli)


def _run_cli(args) -> dict[str, Any]:
    out = Path(args.out)
    return normalize(subject=args.subject, video=args.video, frames_dir=out / "ori_imgs",
                     audio_path=out / "aud.wav",
                     manifest_path=out.parent / "manifests" / f"{STAGE}.json",
                     resolution=args.resolution, crop_scale=args.crop_scale,
                     min_seconds=args.min_seconds)
