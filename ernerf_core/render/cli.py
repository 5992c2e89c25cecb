"""``ernerf render-test`` and ``ernerf render``: rendering by hand, as the rules run it.

``render-test`` is rule ``render_test``. ``render --audio X --subject S`` is a one-off
``render_audio``: it featurises X with the backend the model was trained on (into a
temporary folder, like rule ``driving_features``) and writes ``<results>/<S>/render/audio/
<X's name>.mp4`` unless ``--out`` says otherwise.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("render-test", help="render the val split with head + torso, write metrics",
                              description="Rule render_test: test.mp4, test_side_by_side.mp4, "
                                          "contact_sheet.png and metrics.json of a subject.")
    p.add_argument("--subject", required=True)
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--model", default=None, help="portrait model (default: <results>/<S>/portrait/model.pt)")
    p.add_argument("--data-dir", default=None, help="subject folder (default: <results>/<S>/data)")
    p.add_argument("--out-dir", default=None, help="output folder (default: <results>/<S>/render)")
    p.add_argument("--downscale", type=float, default=None,
                   help="render at 1/downscale of the video size (default: the size the head was trained at)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_test)

    p = subparsers.add_parser("render", help="render a subject saying any audio file",
                              description="One-off render_audio: any audio (or video) file -> mp4 of the "
                                          "subject saying it, with the audio muxed.")
    p.add_argument("--audio", required=True, help="any audio or video file ffmpeg reads")
    p.add_argument("--subject", required=True)
    p.add_argument("--results", default="results", help="results folder (default: results)")
    p.add_argument("--model", default=None, help="portrait model (default: <results>/<S>/portrait/model.pt)")
    p.add_argument("--out", default=None,
                   help="video to write (default: <results>/<S>/render/audio/<name>.mp4)")
    p.add_argument("--smooth-window", type=int, default=7, help="pose smoothing window in frames (default 7)")
    p.add_argument("--no-smooth", action="store_true", help="use the training poses unsmoothed")
    p.add_argument("--fixed-eye", type=float, default=None, help="eye value 0 (open) .. 1 (closed)")
    p.add_argument("--downscale", type=float, default=None,
                   help="render at 1/downscale of the video size (default: the size the head was trained at)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_run_audio)


def _run_test(args: argparse.Namespace) -> dict:
    from .test_split import render_test

    subject_dir = Path(args.results) / args.subject
    out = Path(args.out_dir) if args.out_dir else subject_dir / "render"
    return render_test(subject=args.subject, model_path=args.model or subject_dir / "portrait" / "model.pt",
                       data_dir=args.data_dir or subject_dir / "data", video_path=out / "test.mp4",
                       side_by_side_path=out / "test_side_by_side.mp4", sheet_path=out / "contact_sheet.png",
                       metrics_path=out / "metrics.json", downscale=args.downscale, device=args.device)


def _run_audio(args: argparse.Namespace) -> dict:
    from ..audio import extract_features
    from ..errors import StageError
    from ..model.portrait import load_portrait
    from .driving import render_audio

    subject_dir = Path(args.results) / args.subject
    model = Path(args.model or subject_dir / "portrait" / "model.pt")
    if not model.exists():
        raise StageError(args.subject, "render", f"{model} is missing", "train the subject first (snakemake)")
    trained = load_portrait(model).audio
    out = Path(args.out) if args.out else subject_dir / "render" / "audio" / f"{Path(args.audio).stem}.mp4"
    with tempfile.TemporaryDirectory(prefix="ernerf-render-") as tmp:
        tmp = Path(tmp)
        extract_features(subject=f"driving:{Path(args.audio).stem}", audio=args.audio,
                         features_path=tmp / "features.npy", manifest_path=tmp / "audio_features.json",
                         backend=trained["backend"], checkpoint=trained.get("checkpoint"),
                         wav_path=tmp / "aud.wav")
        return render_audio(subject=args.subject, model_path=model, features_path=tmp / "features.npy",
                            wav_path=tmp / "aud.wav", audio_manifest_path=tmp / "audio_features.json",
                            video_path=out, smooth_path=not args.no_smooth, smooth_window=args.smooth_window,
                            fixed_eye=args.fixed_eye, downscale=args.downscale, device=args.device)
