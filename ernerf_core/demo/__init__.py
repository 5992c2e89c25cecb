"""The built-in demo subject: a talking head rendered offline from a bundled photo.

``skimage.data.astronaut()`` is the photo. Its MediaPipe face mesh (478 points) is lifted to
3D and extended outward over hair and ears (``rig``); every frame poses that mesh with a
known, smooth, seeded head motion, shapes the mouth by the phones of a committed speech clip
(jaw opening and lip width per phoneme, from eSpeak NG's own timeline: ``visemes``), closes
the eyelids at known frames, and warps the photo through it over a clean plate
(``head_render``). The speech clips were made once with eSpeak NG (``assets/README.md``).

Outputs of ``make_demo_subject``:

- video: mp4, H.264 yuv420p, 25 fps, size x size, the demo speech muxed as AAC.
- drive: 16 kHz mono 16-bit WAV of a different voice saying different sentences.
- truth: ``.npz`` with exactly these keys (N frames, S = size):

  ===============  ==========================  ===========================================
  key              shape, dtype                meaning
  ===============  ==========================  ===========================================
  ``euler_deg``    [N, 3] float32              (pitch, yaw, roll) degrees applied to the head
  ``rotation``     [N, 3, 3] float32           Rz(roll) @ Ry(yaw) @ Rx(pitch), i.e. scipy
                                               ``Rotation.from_euler("xyz", euler_deg,
                                               degrees=True)``; camera coordinates (OpenCV:
                                               x right, y down, z forward):
                                               x_cam = rotation @ x_head + trans
  ``trans``        [N, 3] float32              head origin in camera coordinates (cm)
  ``focal``        () float64                  focal length in pixels at the video size; the
                                               principal point is the image centre (S/2, S/2)
  ``vertices``     [478, 3] float32            the canonical face mesh, head coordinates (cm),
                                               MediaPipe topology; the photo's head pose is
                                               the identity, so euler 0 looks like the photo
  ``landmarks_2d`` [N, 478, 2] float32         projected ground-truth positions of the 478
                                               vertices (after jaw and eyelid motion; the
                                               iris points 468..477 follow the head only),
                                               video pixels, pixel-edge convention
                                               (MediaPipe's normalised x, y times S; pixel
                                               i covers [i, i+1])
  ``blink``        [N] float32                 eyelid closure 0..1 (1 = fully closed)
  ``blink_frames`` [B] int64                   frames where a blink peaks (B >= 2)
  ``mouth_open``   [N] float32                 jaw opening 0..1, from the speech's phones
  ``mouth_width``  [N] float32                 lip width -1 (rounded) .. 0 (rest) .. 1
                                               (spread), from the speech's phones
  ``head_mask``    [N, S, ceil(S/8)] uint8     ``np.packbits(mask, axis=-1)`` of the bool
                                               [N, S, S] head mask (face + hair + ears);
                                               unpack with ``np.unpackbits(head_mask,
                                               axis=-1, count=S).astype(bool)``
  ``mask_shape``   [3] int64                   (N, S, S)
  ``fps``          () int64                    25
  ``size``         () int64                    S
  ===============  ==========================  ===========================================

The projection of a head point is ``focal * x_cam[:2] / x_cam[2] + S / 2``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import StageError
from ..fsio import atomic_file, write_manifest
from ..progress import progress

STAGE = "demo_subject"
SUBJECT = "demo"
FPS = 25
MIN_SECONDS = 1.0  # two blinks need about a second

log = logging.getLogger("ernerf.demo")


def _check_params(size: int, seconds: float) -> None:
    if not isinstance(size, int | np.integer) or size < 32 or size % 2:
        raise StageError(SUBJECT, STAGE, f"size {size!r} is not an even integer >= 32",
                         "set demo.size to an even number of pixels such as 512 "
                         "(H.264 yuv420p needs even dimensions)")
    if not math.isfinite(seconds) or seconds < MIN_SECONDS:
        raise StageError(SUBJECT, STAGE, f"seconds {seconds!r} is shorter than {MIN_SECONDS} s",
                         f"set demo.seconds to at least {MIN_SECONDS}")


def make_demo_subject(video_path: str | os.PathLike, truth_path: str | os.PathLike,
                      drive_path: str | os.PathLike, manifest_path: str | os.PathLike,
                      size: int = 512, seconds: float = 20.0, seed: int = 0) -> dict:
    """Render the demo talking head and write video, ground truth, driving audio, manifest."""
    from ..media.video import VideoWriter
    from .head_render import HeadRenderer
    from .motion import make_motion
    from .rig import build_rig
    from .speech import DEMO_PHONES, DEMO_SPEECH, DRIVE_SPEECH, SAMPLE_RATE, fit_length, load_clip
    from .visemes import mouth_track, read_timeline

    _check_params(size, float(seconds))
    size, seed = int(size), int(seed)
    n_frames = int(round(float(seconds) * FPS))
    try:
        rig = build_rig()
    except RuntimeError as err:
        raise StageError(SUBJECT, STAGE, str(err),
                         "reinstall mediapipe==0.10.21 and scikit-image (their wheels carry the "
                         "face models and the photo)") from err

    clip = load_clip(DEMO_SPEECH)
    speech = fit_length(clip, n_frames / FPS)  # looped like the timeline below
    starts, phones = read_timeline(DEMO_PHONES)
    mouth_open, mouth_width = mouth_track(starts, phones, len(clip) / SAMPLE_RATE, n_frames, FPS)
    motion = make_motion(n_frames, FPS, seed)
    trans = (rig.origin_cam[None] + motion.offset).astype(np.float32)
    renderer = HeadRenderer(rig, size)

    landmarks = np.zeros((n_frames, 478, 2), np.float32)
    masks = np.zeros((n_frames, size, (size + 7) // 8), np.uint8)
    video_path = Path(video_path)
    video_path.parent.mkdir(parents=True, exist_ok=True)
    # the speech goes to ffmpeg as a WAV beside the video; only the muxed copy is kept
    with tempfile.TemporaryDirectory(dir=video_path.parent, prefix=".demo-audio-") as tmp_dir:
        audio_wav = Path(tmp_dir) / "speech.wav"
        sf.write(str(audio_wav), speech, SAMPLE_RATE, subtype="PCM_16")
        with VideoWriter(video_path, size, size, fps=FPS, n_frames=n_frames, audio=audio_wav) as writer:
            for i in progress(range(n_frames), desc="demo frames", unit="frame"):
                frame = renderer.render(motion.rotation[i].astype(np.float64), trans[i].astype(np.float64),
                                        float(mouth_open[i]), float(motion.blink[i]), float(mouth_width[i]))
                writer.write(frame.rgb)
                landmarks[i] = frame.landmarks
                masks[i] = np.packbits(frame.head_mask, axis=-1)

    truth = {
        "euler_deg": motion.euler_deg, "rotation": motion.rotation, "trans": trans,
        "focal": np.float64(renderer.focal), "vertices": rig.vertices[:478].astype(np.float32),
        "landmarks_2d": landmarks, "blink": motion.blink, "blink_frames": motion.blink_frames,
        "mouth_open": mouth_open, "mouth_width": mouth_width, "head_mask": masks,
        "mask_shape": np.array([n_frames, size, size], np.int64),
        "fps": np.int64(FPS), "size": np.int64(size),
    }
    with atomic_file(truth_path) as tmp:
        np.savez_compressed(tmp, **truth)
    with atomic_file(drive_path) as tmp:
        sf.write(str(tmp), load_clip(DRIVE_SPEECH), SAMPLE_RATE, subtype="PCM_16", format="WAV")

    params = {"size": size, "seconds": float(seconds), "seed": seed}
    log.info("demo subject: %d frames at %dx%d, %d blinks", n_frames, size, size, len(motion.blink_frames))
    return write_manifest(manifest_path, stage=STAGE, subject=SUBJECT, params=params,
                          frames=n_frames, fps=FPS, size=size, seconds=n_frames / FPS,
                          video=os.fspath(video_path), truth=os.fspath(truth_path),
                          drive=os.fspath(drive_path), blink_frames=motion.blink_frames,
                          focal=renderer.focal)


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="render the built-in demo subject (video, truth, driving audio)",
                              description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path,
                   help="folder for demo.mp4, demo_truth.npz, drive.wav and demo.json")
    p.add_argument("--size", type=int, default=512, help="frame width = height in pixels (even)")
    p.add_argument("--seconds", type=float, default=20.0, help="clip length")
    p.add_argument("--seed", type=int, default=0, help="seed of head motion and blinks")
    p.set_defaults(func=_run_cli)


def _run_cli(args: argparse.Namespace) -> dict:
    out: Path = args.out
    return make_demo_subject(video_path=out / "demo.mp4", truth_path=out / "demo_truth.npz",
                             drive_path=out / "drive.wav", manifest_path=out / "demo.json",
                             size=args.size, seconds=args.seconds, seed=args.seed)
