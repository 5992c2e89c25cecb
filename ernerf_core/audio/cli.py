"""``ernerf audio-features``: the stage by hand, exactly as the rules run it."""

from __future__ import annotations

import argparse
from pathlib import Path

from .features import AUDIO_FEATURE_FILE, extract_features


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("audio-features", help="audio/video file -> per-frame audio features (.npy)",
                              description="Decode any audio or video file to 16 kHz mono and write "
                                          "[N, W, C] features for its N 25 fps frames.")
    p.add_argument("--audio", required=True, help="any audio or video file")
    p.add_argument("--out", required=True, help="features .npy to write")
    p.add_argument("--backend", default="mel", choices=sorted(AUDIO_FEATURE_FILE))
    p.add_argument("--checkpoint", default=None,
                   help="local model directory or cached Hugging Face name (hubert, wav2vec), "
                        "frozen graph .pb (deepspeech)")
    p.add_argument("--manifest", default=None, help="manifest JSON (default: OUT with .json suffix)")
    p.add_argument("--wav", default=None, help="also write the 16 kHz mono WAV here")
    p.add_argument("--subject", default=None, help="name in messages (default: the audio file's stem)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    return extract_features(subject=args.subject or Path(args.audio).stem, audio=args.audio,
                            features_path=out, manifest_path=args.manifest or out.with_suffix(".json"),
                            backend=args.backend, checkpoint=args.checkpoint, wav_path=args.wav)
