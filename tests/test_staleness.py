"""Staleness: after one end-to-end run, each config change plans exactly the stages it can affect.

The suite's one end-to-end run of every stage: one module-scoped run of `.test/config.yaml`
(its tiny schedules) on the user's own files: the session's demo clip copied to
`inputs/subject.mp4` and two 0.6 s driving audios cut from its drive track (no rule makes
them, so they are inputs as a user's are). Every case is a dry run of a changed config (or a
changed input) in that folder, whose planned job counts, rule by rule, must equal the stages
the change can reach; the inputs are hashed before and after. All dry runs go through one
process (tests/dry_run_batch.py). The matrix is listed in
docs/reliability.md.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from conftest import REPO

pytestmark = pytest.mark.slow

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
DRIVING = ("a", "b")

PREPROCESS = ["normalize", "landmarks", "parsing", "background", "torso_gt", "blink", "preview", "tracking",
              "transforms"]
HEAD = ["train_head", "finetune_lips"]
RENDERS = ["render_test", "render_audio"]


def plan(*rules: str, driving: int = len(DRIVING)) -> dict[str, int]:
    """Job counts for one subject: driving-audio rules run once per driving audio."""
    return {r: driving if r in ("render_audio", "driving_features") else 1 for r in rules}


def run_snakemake(workdir: Path, configfile: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERNERF_NO_PROGRESS": "1"}
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), "--configfile", str(configfile), *args],
                          capture_output=True, text=True, env=env, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder`` (relative name -> hex)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def make_inputs(folder: Path, demo_clip: dict) -> None:
    folder.mkdir(parents=True)
    shutil.copy(demo_clip["video"], folder / "subject.mp4")
    audio, rate = sf.read(demo_clip["drive"], dtype="float32")
    n = int(0.6 * rate)
    for k, name in enumerate(DRIVING):  # two different 0.6 s clips of the drive track
        sf.write(folder / f"drive_{name}.wav", audio[k * n: (k + 1) * n], rate)


@pytest.fixture(scope="module")
def run(tmp_path_factory, demo_clip):
    """The workdir after one end-to-end run, its config, and the inputs' hashes before it."""
    workdir = tmp_path_factory.mktemp("staleness")
    make_inputs(workdir / "inputs", demo_clip)
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["subjects"] = {"demo": {"video": "inputs/subject.mp4"}}
    config["driving_audio"] = {name: f"inputs/drive_{name}.wav" for name in DRIVING}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    before = hashes(workdir / "inputs")
    run_snakemake(workdir, workdir / "config.yaml", "--cores", "2")
    return {"workdir": workdir, "config": config, "inputs_before": before}


def with_key(config: dict, dotted: str, value) -> dict:
    out = copy.deepcopy(config)
    node = out
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value
    return out


# (dotted key, new value, the jobs it must plan). Families as in docs/reliability.md.
CASES = [
    # video resolution / crop: everything of the subject; the driving features do not depend on it
    ("preprocess.resolution", 112, plan(*PREPROCESS, "audio_features", *HEAD, "train_torso", "portrait", *RENDERS)),
    ("preprocess.crop_scale", 2.6, plan(*PREPROCESS, "audio_features", *HEAD, "train_torso", "portrait", *RENDERS)),
    ("preprocess.min_seconds", 1.0, {}),  # a check only
    # landmark backend: landmarks and everything made from them, not normalize or the audio
    ("landmarks.backend", "face_alignment", plan(*PREPROCESS[1:], *HEAD, "train_torso", "portrait", *RENDERS)),
    ("landmarks.max_gap_frames", 6, {}),  # checks only (gaps are always interpolated)
    ("landmarks.max_missing_share", 0.2, {}),
    # parsing backend: parsing, background, torso/gt images, preview and all training
    ("parsing.backend", "bisenet",
     plan("parsing", "background", "torso_gt", "preview", *HEAD, "train_torso", "portrait", *RENDERS)),
    ("parsing.bisenet_weights", "weights/79999_iter.pth", {}),  # unused by the landmarks backend
    # blink: the head reads the eye track, the torso does not
    ("blink.backend", "openface", plan("blink", *HEAD, "portrait", *RENDERS)),
    ("blink.openface_csv", "openface/demo.csv", {}),  # unused by the ear backend
    # tracker settings: poses reach every model
    ("tracking.smooth_weight", 0.5, plan("tracking", "transforms", *HEAD, "train_torso", "portrait", *RENDERS)),
    ("tracking.expressions", 4, plan("tracking", "transforms", *HEAD, "train_torso", "portrait", *RENDERS)),
    ("tracking.max_reprojection_px", 12.0, {}),  # a check only
    ("tracking.bfm_model", "bfm/01_MorphableModel.mat", {}),  # unused by the landmarks backend
    # audio backend: both feature sets, the head stages and what renders them; not the torso
    ("audio.backend", "hubert",
     plan("audio_features", "driving_features", *HEAD, "portrait", *RENDERS)),
    ("audio.checkpoint", "models/hubert-large", {}),  # mel has no weights
    # head training and the shared training keys
    ("train.head.iters", 40, plan(*HEAD, "portrait", *RENDERS)),
    ("train.head.lips_share", 0.5, plan(*HEAD, "portrait", *RENDERS)),
    ("train.head.cache_mb", 64, {}),  # runtime keys: never change a model
    ("train.head.val_every", 10, {}),
    ("train.head.checkpoint_every", 5, {}),
    ("train.loss", "l1", plan(*HEAD, "train_torso", "portrait", *RENDERS)),
    ("train.device", "cpu", {}),
    # the preset: every training stage's schedule keys this config leaves null (downscale, lr)
    ("train.preset", "gpu", plan(*HEAD, "train_torso", "portrait", *RENDERS)),
    # the head's grids and network sizes: the head stages, never the torso
    ("model.grids.xy.levels", 6, plan(*HEAD, "portrait", *RENDERS)),
    ("model.max_samples", 12, plan(*HEAD, "portrait", *RENDERS)),
    # lips
    ("train.lips.iters", 12, plan("finetune_lips", "portrait", *RENDERS)),
    ("train.lips.cache_mb", 64, {}),
    # torso: its own grid and schedule; the whole-frame check (portrait) uses final_val_frames too
    ("train.torso.iters", 24, plan("train_torso", "portrait", *RENDERS)),
    ("train.torso.grid.levels", 12, plan("train_torso", "portrait", *RENDERS)),
    ("train.torso.final_val_frames", 2, plan("train_torso", "portrait", *RENDERS)),
    ("train.torso.val_every", 10, {}),
    # render: downscale is both renders' only shared key; the rest is the driving renders'
    ("render.downscale", 1.0, plan(*RENDERS)),
    ("render.smooth_window", 3, plan("render_audio")),
    ("render.fixed_eye", 0.5, plan("render_audio")),
    ("render.syncnet_weights", "weights/syncnet_v2.model", plan("render_test")),  # a render_test metric
    # the demo section only describes the built-in subject, which this run does not use
    ("demo.size", 160, {}),
]


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def plans(run, tmp_path_factory):
    """Every case's dry run, in one batch: case id -> {rc, jobs, nothing, tail}."""
    workdir, config = run["workdir"], run["config"]
    folder = tmp_path_factory.mktemp("plans")
    spec = [{"id": "unchanged", "workdir": str(workdir), "configfile": str(workdir / "config.yaml")}]
    for key, value, _ in CASES:
        changed = with_key(config, key, value)
        assert changed != config, f"{key}: {value!r} is the run's own value"
        spec.append({"id": key, "workdir": str(workdir),
                     "configfile": str(write_config(folder / f"{key}.yaml", changed))})
    # a second subject (its video outside the workdir)
    shutil.copy(workdir / "inputs/subject.mp4", folder / "second.mp4")
    two = copy.deepcopy(config)
    two["subjects"]["second"] = {"video": str(folder / "second.mp4")}
    spec.append({"id": "new subject", "workdir": str(workdir),
                 "configfile": str(write_config(folder / "two_subjects.yaml", two))})
    # one driving audio edited, on a copy of the workdir (mtimes kept) so the run's inputs stay
    for name in ("copy", "copy edited"):
        shutil.copytree(workdir, folder / name, symlinks=True)
        spec.append({"id": name, "workdir": str(folder / name), "configfile": str(folder / name / "config.yaml")})
    drive = folder / "copy edited" / "inputs/drive_a.wav"
    audio, rate = sf.read(drive, dtype="float32")
    sf.write(drive, np.clip(audio * 0.5 + 0.01, -1, 1), rate)
    spec.append(dict(spec[0], id="unchanged, at the end"))
    (folder / "spec.json").write_text(json.dumps(spec))
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("dry_run_batch.py")), str(REPO / "Snakefile"),
                           str(folder / "spec.json")], capture_output=True, text=True, timeout=900,
                          env={**os.environ, "ERNERF_NO_PROGRESS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def planned(plans: dict, case: str) -> dict[str, int]:
    result = plans[case]
    assert result["rc"] == 0, result["tail"]
    if not result["jobs"]:
        assert result["nothing"], result["tail"]
    return result["jobs"]


def test_the_run_writes_every_stage_keeps_its_inputs_and_then_has_nothing_to_do(run, plans):
    """`.test/config.yaml` end to end: every stage's real outputs, inputs untouched, then nothing to do."""
    workdir = run["workdir"]
    subject = workdir / "results/demo"
    for target in ("render/test.mp4", "render/metrics.json", "preview/contact_sheet.png", "preview/tracking.png",
                   "data/lms/0.lms", *(f"render/audio/{name}.mp4" for name in DRIVING)):
        assert (subject / target).stat().st_size > 0, target
    assert not list((subject / "data/ori_imgs").glob("*.lms")), "landmarks wrote into normalize's folder"
    assert hashes(workdir / "inputs") == run["inputs_before"], "the run changed or added files in inputs/"
    assert planned(plans, "unchanged") == {}
    assert planned(plans, "unchanged, at the end") == {}


@pytest.mark.parametrize(("key", "expected"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_a_config_change_plans_exactly_what_it_can_affect(plans, key, expected):
    assert planned(plans, key) == expected


def test_editing_one_driving_audio_reruns_only_its_renders(plans):
    assert planned(plans, "copy") == {}  # the copy keeps the run's state
    assert planned(plans, "copy edited") == plan("driving_features", "render_audio", driving=1)


def test_a_new_subject_plans_only_that_subject(plans):
    expected = plan(*PREPROCESS, "audio_features", *HEAD, "train_torso", "portrait", *RENDERS)
    assert planned(plans, "new subject") == expected  # once each; no driving_features: shared


def test_inputs_are_unchanged_after_every_dry_run(run, plans):
    assert hashes(run["workdir"] / "inputs") == run["inputs_before"]
