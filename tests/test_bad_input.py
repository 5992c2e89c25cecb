"""Bad input, the cases no other test file covers (the matrix is docs/reliability.md "Bad input").

Each bad input is a one-line StageError naming the subject, the stage and what to do, with
nothing half-written; questionable-but-workable input (two faces, a silent track) runs and
says so in the log and in the manifest's ``warnings``. Covered elsewhere (not repeated
here): no face, no audio track, corrupt / truncated / empty / text files, 30 fps and
variable fps, odd and portrait sizes, too short a clip, unsafe subject names
(tests/test_normalize.py, tests/test_landmarks.py, tests/test_audio_features.py,
tests/test_workflow.py), driving features of another backend (tests/test_render.py), pickle
payloads in checkpoints and read directly from model files (tests/test_faults.py).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch
from synthetic_subject import make_synthetic_subject
from test_normalize import RES, check_outputs, face_png, make_video  # noqa: F401  (face_png: a fixture)

from ernerf_core.audio.features import extract_features
from ernerf_core.errors import StageError
from ernerf_core.media import write_png
from ernerf_core.media.audio import write_wav
from ernerf_core.media.video import VideoWriter, inspect_video
from ernerf_core.model.head import build_head
from ernerf_core.model.io import save_head
from ernerf_core.preprocess.normalize import normalize
from ernerf_core.render import driving
from ernerf_core.render.driving import render_audio
from ernerf_core.render.test_split import render_test
from ernerf_core.train.dataset import SubjectDataset
from ernerf_core.train.lips import finetune_lips
from ernerf_core.train.portrait import assemble_portrait
from ernerf_core.train.torso import train_torso

WIDE = 512  # feature channels of the tiny portrait: 32 KB of features per frame, so holding them shows


def normalize_into(root: Path, video: Path, subject: str = "clip") -> tuple[dict, Path]:
    data = root / "data"
    manifest = normalize(subject=subject, video=video, frames_dir=data / "ori_imgs", audio_path=data / "aud.wav",
                         manifest_path=root / "manifests" / "normalize.json", resolution=RES)
    return manifest, data


# ---- questionable but workable: a warning in the log and in the manifest ------------------------------


def test_two_faces_warn_in_the_log_and_the_manifest_and_the_crop_follows_the_larger(tmp_path, face_png, caplog):  # noqa: F811
    photo = cv2.imread(str(face_png))[:, :, ::-1]
    canvas = np.full((288, 512, 3), 128, np.uint8)
    canvas[16:272, 16:272] = photo  # the speaker
    canvas[88:280, 308:500] = cv2.resize(photo, (192, 192), interpolation=cv2.INTER_AREA)  # someone behind
    two = tmp_path / "two.png"
    write_png(two, canvas)
    video = make_video(tmp_path / "two faces.mp4", two, vf="scale=512:288", fps=25)
    with caplog.at_level(logging.WARNING, logger="ernerf.normalize"):
        manifest, data = normalize_into(tmp_path / "out", video)
    check_outputs(manifest, data, frames=60)
    warning = next(w for w in manifest["warnings"] if "more than one face" in w)
    assert f"{manifest['face']['samples']} of {manifest['face']['samples']} sampled frames" in warning
    assert manifest["face"]["multi_face_samples"] == manifest["face"]["samples"]
    assert "more than one face" in caplog.text and "[clip] normalize" in caplog.text
    # MediaPipe finds the big copy's face ~51 px wide at x 105-156, the small one's ~39 px at x 374-413
    cx, cy = manifest["face"]["center"]
    assert 105 < cx < 156 and manifest["face"]["size"] > 45
    on_disk = json.loads((tmp_path / "out" / "manifests" / "normalize.json").read_text())
    assert on_disk["warnings"] == manifest["warnings"]


def test_a_silent_track_warns_in_the_log_and_the_manifest(tmp_path, face_png, caplog):  # noqa: F811
    video = make_video(tmp_path / "silent.mp4", face_png, vf="scale=256:256", audio="anullsrc=r=44100:cl=stereo")
    with caplog.at_level(logging.WARNING, logger="ernerf.normalize"):
        manifest, data = normalize_into(tmp_path / "out", video)
    check_outputs(manifest, data, frames=60)  # the subject folder is complete: the stage ran
    assert manifest["audio_dbfs"] is None  # digital silence
    assert any("audio track is silent" in w for w in manifest["warnings"])
    assert "audio track is silent" in caplog.text
    assert np.abs(sf.read(data / "aud.wav")[0]).max() == 0
    # the features of silence are the mel floor (tests/test_audio_features.py): the next stage runs too
    feats = extract_features("clip", data / "aud.wav", tmp_path / "out" / "aud_mel.npy",
                             tmp_path / "out" / "manifests" / "audio_features.json")
    assert feats["frames"] == 60


def test_a_speaking_track_and_one_face_give_no_warning(tmp_path, face_png):  # noqa: F811
    video = make_video(tmp_path / "ok.mp4", face_png, vf="scale=256:256")
    manifest, _ = normalize_into(tmp_path / "out", video)
    assert manifest["warnings"] == [] and manifest["audio_dbfs"] > -30


# ---- paths with spaces and non-ASCII letters -------------------------------------------------------------


def test_paths_with_spaces_and_non_ascii_letters(tmp_path, face_png):  # noqa: F811
    """The user's video, the subject folder and the rendered video all live under such names."""
    home = tmp_path / "Mes vidéos ü" / "été 2024"
    home.mkdir(parents=True)
    video = make_video(home / "Zoë talks ñ 1.mp4", face_png, vf="scale=256:256")
    out = tmp_path / "résultats dé test" / "clip"
    manifest, data = normalize_into(out, video)
    check_outputs(manifest, data, frames=60)
    feats = extract_features("clip", data / "aud.wav", data / "aud_mel.npy", out / "manifests" / "audio features.json",
                             wav_path=out / "driving ä" / "aud.wav")
    assert feats["frames"] == 60 and (out / "driving ä" / "aud.wav").is_file()
    clip = out / "render ö" / "Zoë says ñ.mp4"
    with VideoWriter(clip, 32, 32, n_frames=60, audio=out / "driving ä" / "aud.wav") as writer:
        for i in range(60):
            writer.write(np.full((32, 32, 3), 4 * i, np.uint8))
    facts = inspect_video(clip)
    assert facts["frames"] == 60 and facts["audio_codec"] == "aac"


# ---- a tiny portrait with wide audio features ------------------------------------------------------------


def random_small_head(path: Path, data_dir: Path) -> Path:
    train = SubjectDataset(data_dir, "train", load_images=False)
    spec = {"levels": 4, "log2_table_size": 10, "base_resolution": 8, "finest_resolution": 32}
    torch.manual_seed(0)
    head = build_head({"grids": {p: spec for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32},
                      train.audio_shape, len(train))
    meta = {"audio": {"backend": train.audio_backend, "channels": train.audio_shape[1],
                      "window": train.audio_shape[0]},
            "scene": {"scale": 4.0, "offset": [0.0, 0.0, 0.0]},
            "data": {"H": train.full_size[0], "W": train.full_size[1], "intrinsics": list(train.full_intrinsics),
                     "n_train": len(train)},
            "train": {"stage": "finetune_lips", "id": "random", "steps": 0, "settings": {}, "metrics": {}}}
    save_head(path, head, meta)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    subj = make_synthetic_subject(root, n_frames=12, size=32, feature_dim=WIDE)
    random_small_head(root / "lips" / "model.pt", subj.data_dir)
    train_torso(subject="synth", data_dir=subj.data_dir, model_path=root / "torso" / "model.pt",
                manifest_path=root / "manifests" / "train_torso.json",
                settings={"iters": 2, "num_rays": 256, "downscale": 1.0, "final_val_frames": 1}, device="cpu")
    assemble_portrait(subject="synth", data_dir=subj.data_dir, head_path=root / "lips" / "model.pt",
                      torso_path=root / "torso" / "model.pt", model_path=root / "portrait" / "model.pt",
                      manifest_path=root / "manifests" / "portrait.json", val_frames=1, device="cpu")
    return subj


def driving_folder(root: Path, seconds: float) -> Path:
    """What rule driving_features leaves for ``seconds`` of audio, features [M, 16, WIDE]."""
    n = int(round(seconds * 25))
    folder = root / f"drive_{n}"
    folder.mkdir(parents=True)
    with open(folder / "aud_mel.npy", "wb") as fh:  # written in blocks: the test process stays small too
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (n, 16, WIDE)})
        rng = np.random.default_rng(1)
        for lo in range(0, n, 250):
            fh.write(rng.normal(size=(min(250, n - lo), 16, WIDE)).astype("<f4").tobytes())
    t = np.arange(n * 640) / 16000
    write_wav(folder / "aud.wav", 0.3 * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(5 * t)), 16000)
    (folder / "audio_features.json").write_text(json.dumps(
        {"backend": "mel", "checkpoint": None, "feature_shape": [n, 16, WIDE]}))
    return folder


# ---- a very long driving audio: memory stays flat, frames stream to the encoder --------------------------

RSS_CHILD = r"""
import json, os, sys, threading, time
import torch
torch.set_num_threads(1)
from ernerf_core.render.driving import render_audio

def status(pid, key):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        return None

encoder_hwm, done = {}, False
def watch():  # the ffmpeg encoder's own high-water mark, read while it runs
    while not done:
        for task in os.listdir("/proc/self/task"):
            try:
                children = open(f"/proc/self/task/{task}/children").read().split()
            except OSError:
                continue
            for pid in children:
                v = status(pid, "VmHWM")
                if v:
                    encoder_hwm[pid] = max(encoder_hwm.get(pid, 0), v)
        time.sleep(0.2)
threading.Thread(target=watch, daemon=True).start()
folder, model, video = sys.argv[1:4]
start = status("self", "VmRSS")
t0 = time.perf_counter()
out = render_audio(subject="synth", model_path=model, features_path=f"{folder}/aud_mel.npy",
                   wav_path=f"{folder}/aud.wav", audio_manifest_path=f"{folder}/audio_features.json",
                   video_path=video, downscale=4.0, device="cpu")
done = True
print(json.dumps({"frames": out["frames"], "seconds": time.perf_counter() - t0, "start_mb": start,
                  "peak_mb": status("self", "VmHWM"), "encoder_mb": max(encoder_hwm.values(), default=None)}))
"""


def render_in_a_fresh_process(tiny, folder: Path) -> dict:
    """Peak RSS (VmHWM: this process alone, not the forked parent) of render_audio in a new process."""
    env = {**os.environ, "ERNERF_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", RSS_CHILD, str(folder), str(tiny.root / "portrait" / "model.pt"),
                           str(folder / "out.mp4")], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_minutes_of_driving_audio_render_in_flat_memory(tiny, tmp_path):
    """100 s against 20 s of audio: the features (78 MB at 100 s, against the 15 MB allowed) are read a
    window at a time, so the peak RSS of the render, and of its encoder, does not grow with the audio's length."""
    short = render_in_a_fresh_process(tiny, driving_folder(tmp_path, 20))
    long = render_in_a_fresh_process(tiny, driving_folder(tmp_path, 100))
    assert (short["frames"], long["frames"]) == (500, 2500)
    feature_mb = 2500 * 16 * WIDE * 4 / 2 ** 20
    grew = long["peak_mb"] - short["peak_mb"]
    print(f"peak RSS: 20 s {short['peak_mb']:.0f} MB, 100 s {long['peak_mb']:.0f} MB (+{grew:.1f}; the 100 s "
          f"features are {feature_mb:.0f} MB); encoder {short['encoder_mb']} / {long['encoder_mb']} MB; "
          f"render {short['seconds']:.0f} / {long['seconds']:.0f} s")
    assert grew < 15, (short, long)
    assert long["encoder_mb"] is not None and long["encoder_mb"] - short["encoder_mb"] < 15, (short, long)
    assert inspect_video(tmp_path / "drive_2500" / "out.mp4")["frames"] == 2500


def test_frames_stream_to_the_encoder_as_they_are_rendered(tiny, tmp_path, monkeypatch):
    """Each frame is handed to ffmpeg before the next one is rendered: nothing collects the video."""
    folder = driving_folder(tmp_path, 1.2)
    events = []
    real_render, real_write = driving.render_frame, VideoWriter.write

    def render_frame(*a, **kw):
        events.append("render")
        return real_render(*a, **kw)

    def write(self, frame):
        events.append("write")
        return real_write(self, frame)

    monkeypatch.setattr(driving, "render_frame", render_frame)
    monkeypatch.setattr(VideoWriter, "write", write)
    render_audio(subject="synth", model_path=tiny.root / "portrait" / "model.pt",
                 features_path=folder / "aud_mel.npy", wav_path=folder / "aud.wav",
                 audio_manifest_path=folder / "audio_features.json", video_path=folder / "out.mp4",
                 downscale=4.0, device="cpu")
    assert events == ["render", "write"] * 30


def test_a_truncated_or_object_features_file_is_a_one_line_error(tiny, tmp_path):
    folder = driving_folder(tmp_path, 1.2)
    feats = folder / "aud_mel.npy"
    video = folder / "out.mp4"
    kwargs = dict(subject="synth", model_path=tiny.root / "portrait" / "model.pt", features_path=feats,
                  wav_path=folder / "aud.wav", audio_manifest_path=folder / "audio_features.json", video_path=video,
                  downscale=4.0, device="cpu")
    feats.write_bytes(feats.read_bytes()[:-1000])
    with pytest.raises(StageError, match=r"\[synth\] render_audio: cannot read the driving features .*: truncated"):
        render_audio(**kwargs)
    np.save(feats, np.array([{"a": 1}] * 30, dtype=object), allow_pickle=True)
    with pytest.raises(StageError, match="rerun driving_features"):
        render_audio(**kwargs)
    assert not video.exists() and not list(folder.glob("*.tmp*"))


# ---- a model file or checkpoint that carries a pickle payload --------------------------------------------


class Payload:
    """Unpickling this touches ``marker``: a stand-in for code a model file runs when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def poisoned(path: Path, original: Path, marker: Path) -> Path:
    """``original``'s payload with a code-running object slipped into its meta."""
    payload = torch.load(original, map_location="cpu", weights_only=True)
    payload["meta"] = {**payload.get("meta", {}), "note": Payload(marker)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def test_stages_refuse_a_pickle_payload_with_one_line_and_write_nothing(tiny, tmp_path):
    """Every stage that reads a head, torso or portrait file: one line naming subject and stage, the
    payload never runs, nothing written (the readers themselves: tests/test_faults.py)."""
    marker = tmp_path / "code ran"
    data = tiny.data_dir
    head = poisoned(tmp_path / "in" / "head.pt", tiny.root / "lips" / "model.pt", marker)
    torso = poisoned(tmp_path / "in" / "torso.pt", tiny.root / "torso" / "model.pt", marker)
    portrait = tmp_path / "in" / "portrait.pt"
    payload = torch.load(tiny.root / "portrait" / "model.pt", map_location="cpu", weights_only=True)
    payload["note"] = Payload(marker)
    torch.save(payload, portrait)
    out = tmp_path / "out"
    drive = driving_folder(tmp_path, 0.4)
    good_head, good_torso = tiny.root / "lips" / "model.pt", tiny.root / "torso" / "model.pt"
    runs = {
        "finetune_lips": lambda: finetune_lips(
            subject="synth", data_dir=data, head_path=head, model_path=out / "lips" / "model.pt",
            manifest_path=out / "lips.json", settings={"iters": 1, "downscale": 1}, device="cpu"),
        "portrait (head)": lambda: assemble_portrait(
            subject="synth", data_dir=data, head_path=head, torso_path=good_torso,
            model_path=out / "portrait" / "model.pt", manifest_path=out / "portrait.json", device="cpu"),
        "portrait (torso)": lambda: assemble_portrait(
            subject="synth", data_dir=data, head_path=good_head, torso_path=torso,
            model_path=out / "portrait" / "model.pt", manifest_path=out / "portrait.json", device="cpu"),
        "render_audio": lambda: render_audio(
            subject="synth", model_path=portrait, features_path=drive / "aud_mel.npy", wav_path=drive / "aud.wav",
            audio_manifest_path=drive / "audio_features.json", video_path=out / "drive.mp4", device="cpu"),
        "render_test": lambda: render_test(
            subject="synth", model_path=portrait, data_dir=data, video_path=out / "test.mp4",
            side_by_side_path=out / "sbs.mp4", sheet_path=out / "sheet.png", metrics_path=out / "metrics.json",
            device="cpu"),
    }
    for name, call in runs.items():
        with pytest.raises(StageError) as err:
            call()
        message = str(err.value)
        stage = name.split()[0]
        assert "\n" not in message and message.startswith(f"[synth] {stage}:"), message
        assert "pickled objects other than tensors" in message and err.value.remedy, message
    assert not marker.exists()
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]
