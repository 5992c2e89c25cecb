"""A long driving render, checked for flat memory and a mouth that follows the audio.

``python -m benchmarks.driving_clip --portrait results_real/<name>/results/<name>/portrait/model.pt``

Builds a driving track of ``--seconds`` (default 60) from ``--audio`` (default the shared 11 s
speech recording), repeated with ``--gap`` seconds of silence between repeats so the clip has
pauses a mouth must close in; extracts its features with the portrait's audio backend; renders
it with the ``render_audio`` stage (at the size the head was trained at); then reads the video
back and measures, on every frame, the mouth opening (MediaPipe, as ``render_test`` does):

- memory: resident memory after the first tenth of the frames, at the end, and the peak;
- ``audio_envelope_corr``: the opening against the audio's loudness, with its frame count and
  95 % interval (no truth mouth exists for a driving clip);
- ``opening_speech`` / ``opening_silence``: the mean opening in frames whose 40 ms window is
  speech against the frames in the silent gaps (a mouth that follows the audio closes there).

Prints the numbers and writes ``<out>/driving_clip.json``. A developer tool (several minutes on
a CPU), not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_AUDIO = REPO.parent / "shared" / "media" / "speech_jfk_11s.flac"
SAMPLE_RATE = 16000


def driving_wav(audio: Path, seconds: float, gap: float) -> tuple[np.ndarray, np.ndarray]:
    """(waveform [S] float32 16 kHz of exactly ``seconds``, speech mask [S] bool): ``audio``
    repeated with ``gap`` s of silence after each repeat."""
    from ernerf_core.media.audio import load_audio

    clip = load_audio(audio, SAMPLE_RATE)
    silence = np.zeros(int(round(gap * SAMPLE_RATE)), dtype=np.float32)
    n = int(round(seconds * SAMPLE_RATE))
    parts, mask = [], []
    while sum(p.size for p in parts) < n:
        parts += [clip, silence]
        mask += [np.ones(clip.size, bool), np.zeros(silence.size, bool)]
    return np.concatenate(parts)[:n], np.concatenate(mask)[:n]


def read_frames(video: Path):
    import cv2

    cap = cv2.VideoCapture(str(video))
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--portrait", type=Path, required=True, help="a portrait model.pt")
    ap.add_argument("--audio", type=Path, default=DEFAULT_AUDIO, help="speech to repeat (default: the shared 11 s)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--gap", type=float, default=1.5, help="seconds of silence after each repeat")
    ap.add_argument("--out", type=Path, default=REPO / "results_driving")
    args = ap.parse_args(argv)
    if not args.audio.exists() or not args.portrait.exists():
        print(f"missing input: {args.audio if not args.audio.exists() else args.portrait}", file=sys.stderr)
        return 2
    from ernerf_core.audio import AUDIO_FEATURE_FILE, extract_features
    from ernerf_core.media.audio import write_wav
    from ernerf_core.metrics.lipsync import FPS, audio_envelope, correlation_with_interval, mouth_opening
    from ernerf_core.model.portrait import load_portrait
    from ernerf_core.render.driving import render_audio

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    wav, speech = driving_wav(args.audio, args.seconds, args.gap)
    wav_path = out / "drive.wav"
    write_wav(wav_path, wav, SAMPLE_RATE)
    backend = load_portrait(args.portrait, "cpu").audio["backend"]
    features = out / AUDIO_FEATURE_FILE[backend]
    extract_features(subject="driving_clip", audio=wav_path, features_path=features,
                     manifest_path=out / "audio_features.json", backend=backend, wav_path=out / "aud.wav")
    video = out / "drive.mp4"
    t0 = time.perf_counter()
    result = render_audio(subject="driving_clip", model_path=args.portrait, features_path=features,
                          wav_path=out / "aud.wav", audio_manifest_path=out / "audio_features.json",
                          video_path=video, device="cpu")
    render_s = time.perf_counter() - t0
    opening = mouth_opening(read_frames(video))
    n = opening.size
    envelope = audio_envelope(wav, SAMPLE_RATE, n)
    hop = SAMPLE_RATE // FPS
    frame_speech = np.array([speech[max(0, i * hop - hop // 2): i * hop + hop // 2].mean() > 0.5 for i in range(n)])
    corr = correlation_with_interval(opening, envelope)
    report = {
        "portrait": str(args.portrait), "audio": str(args.audio), "seconds": args.seconds, "frames": n,
        "render_seconds": round(render_s, 1), "render_fps": result["render_fps"], **result["memory"],
        "audio_envelope_corr": corr["r"], "audio_envelope_corr_ci95": corr["ci95"],
        "opening_speech": float(np.nanmean(opening[frame_speech])),
        "opening_silence": float(np.nanmean(opening[~frame_speech])),
        "opening_std": float(np.nanstd(opening)), "face_found_share": float(np.isfinite(opening).mean()),
    }
    (out / "driving_clip.json").write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        print(f"{key:<28} {value}")
    print(f"-> {out / 'driving_clip.json'}, {video}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
