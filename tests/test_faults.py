"""Faults: killed stages, damaged and hostile checkpoints, checkpoints of other data.

- `train_head` SIGKILLed mid-run (a real `ernerf train-head` process) resumes from its latest
  checkpoint on the rerun and ends as an unbroken run does;
- a preprocessing stage SIGKILLed mid-run inside Snakemake (normalize, then torso_gt) leaves
  no output and no manifest, the rerun plans exactly the killed stage and what follows,
  cleans the killed writer's temporaries and completes; the input video is untouched;
- a truncated checkpoint is skipped with a message naming it, and the previous one is used;
- a checkpoint or model file that carries a pickle payload is refused (weights-only loading)
  and its code never runs;
- checkpoints made on other data (redone preprocessing) are not resumed.
The matrix is listed in docs/reliability.md.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO
from synthetic_subject import make_synthetic_subject
from test_workflow import planned_jobs

from ernerf_core.train.checkpoint import list_checkpoints, load_latest, save_checkpoint, settings_key
from ernerf_core.train.trainer import Trainer

SMALL_GRID = {"levels": 8, "log2_table_size": 12, "base_resolution": 16, "finest_resolution": 128}
MODEL = {"grids": {p: SMALL_GRID for p in ("xy", "yz", "xz")}, "occupancy_resolution": 64}
HEAD = {"iters": 80, "num_rays": 512, "downscale": 1, "val_every": 0, "final_val_frames": 1,
        "checkpoint_every": 10, "occupancy_update_fraction": 1.0}
ENV = {**os.environ, "ERNERF_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``predicate`` every 5 ms while ``proc`` runs; fail if it ends or times out first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the process ended (rc {proc.returncode}) before the kill point:\n{out[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("kill point not reached in time")
        time.sleep(0.005)


def sigkill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group started for ``proc`` (it and every child: a node going down)."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


# ---- train_head killed mid-run --------------------------------------------------------------

def train_head_cmd(subject_dir: Path, config: Path) -> list[str]:
    return [sys.executable, "-m", "ernerf_core.cli", "train-head", "synth", "--subject-dir", str(subject_dir),
            "--config", str(config), "--device", "cpu"]


def log_rows(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["loss"]]


def test_sigkill_train_head_resumes_from_its_latest_checkpoint(tmp_path):
    subj = make_synthetic_subject(tmp_path / "subject", n_frames=12, size=48, feature_dim=8)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"train": {"head": HEAD}, "model": MODEL}))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    for root in (straight, killed):
        shutil.copytree(subj.root, root)

    subprocess.run(train_head_cmd(straight, config), check=True, env=ENV, capture_output=True, timeout=600)

    proc = subprocess.Popen(train_head_cmd(killed, config), env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ckpts = killed / "head" / "checkpoints"
    wait_for(lambda: (ckpts / "step_0000020.pt").exists(), proc)
    sigkill_group(proc)
    assert not (killed / "head" / "model.pt").exists() and not (killed / "manifests" / "train_head.json").exists()
    latest = list_checkpoints(ckpts)[-1][0]
    assert 20 <= latest < HEAD["iters"], latest

    rerun = subprocess.run(train_head_cmd(killed, config), env=ENV, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    m = re.search(r"resuming from step_(\d+)\.pt \(step (\d+)\)", rerun.stderr)
    assert m and int(m.group(2)) == latest, rerun.stderr[-3000:]  # the step count continues
    assert f"resumed train_head at step {latest} of {HEAD['iters']}" in rerun.stderr

    a = json.loads((straight / "manifests" / "train_head.json").read_text())
    b = json.loads((killed / "manifests" / "train_head.json").read_text())
    assert a["steps"] == b["steps"] == HEAD["iters"]
    assert b["val"]["psnr"] == pytest.approx(a["val"]["psnr"], abs=0.05)
    # the log holds each logged step once, as the unbroken run's, with the same losses
    rows_a, rows_b = log_rows(straight / "head" / "train_log.csv"), log_rows(killed / "head" / "train_log.csv")
    assert [r["step"] for r in rows_b] == [r["step"] for r in rows_a]
    assert [float(r["loss"]) for r in rows_b] == pytest.approx([float(r["loss"]) for r in rows_a], rel=1e-4)
    from ernerf_core.model.io import read_head_file

    wa, wb = read_head_file(straight / "head" / "model.pt")["state_dict"], read_head_file(
        killed / "head" / "model.pt")["state_dict"]
    for k in wa:
        torch.testing.assert_close(wb[k], wa[k], rtol=1e-4, atol=1e-5, msg=k)


# ---- a preprocessing stage killed inside Snakemake ------------------------------------------

def snakemake_popen(workdir: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                             str(workdir), "--configfile", str(workdir / "config.yaml"), *args],
                            env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def snakemake_run(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    proc = snakemake_popen(workdir, *args)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout=out, stderr="")


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if re.search(r"\.(tmp|old)-\d+", p.name)]


def filling(folder: Path, name: str, n: int = 3):
    """True once a killed-to-be writer's temporary folder ``.<name>.tmp-<pid>`` holds n files."""
    def check() -> bool:
        return any(len(list(t.iterdir())) >= n for t in folder.glob(f".{name}.tmp-*") if t.is_dir())
    return check


def test_sigkill_preprocessing_leaves_nothing_finished_and_the_rerun_completes(tmp_path, demo_clip):
    workdir = tmp_path / "work"
    (workdir / "inputs").mkdir(parents=True)
    video = workdir / "inputs" / "subject.mp4"
    shutil.copy(demo_clip["video"], video)
    before = sha256(video)
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config.update(subjects={"demo": {"video": "inputs/subject.mp4"}}, driving_audio={})
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    data, manifests = workdir / "results/demo/data", workdir / "results/demo/manifests"
    target = "results/demo/manifests/torso_gt.json"

    # 1. normalize killed while it writes frames: no frames folder, no audio, no manifest
    proc = snakemake_popen(workdir, "--cores", "2", target)
    wait_for(filling(data, "ori_imgs"), proc)
    sigkill_group(proc)
    assert not (data / "ori_imgs").exists() and not (data / "aud.wav").exists()
    assert not (manifests.exists() and list(manifests.glob("*.json")))
    assert temporaries(data), "the kill point was inside normalize's temporary folder"
    snakemake_run(workdir, "--unlock")  # a killed Snakemake leaves its lock: the documented first step
    jobs = planned_jobs(snakemake_run(workdir, "-n", target))
    assert jobs == {"normalize": 1, "landmarks": 1, "parsing": 1, "background": 1, "torso_gt": 1}, jobs

    # 2. rerun, torso_gt killed while it writes: the stages before it stay finished, it does not
    proc = snakemake_popen(workdir, "--cores", "2", target)
    wait_for(filling(data, "gt_imgs"), proc)
    sigkill_group(proc)
    assert all((manifests / f"{s}.json").exists() for s in ("normalize", "landmarks", "parsing", "background"))
    assert not (data / "gt_imgs").exists() and not (data / "torso_imgs").exists()
    assert not (manifests / "torso_gt.json").exists()
    assert not list(data.glob(".ori_imgs.tmp-*")), "the rerun of normalize left the killed one's frames"
    snakemake_run(workdir, "--unlock")
    assert planned_jobs(snakemake_run(workdir, "-n", target)) == {"torso_gt": 1}

    # 3. the rerun completes and cleans up after the killed writer
    snakemake_run(workdir, "--cores", "2", target)
    frames = json.loads((manifests / "normalize.json").read_text())["frames"]
    assert len(list((data / "gt_imgs").glob("*.jpg"))) == len(list((data / "torso_imgs").glob("*.png"))) == frames
    assert not temporaries(workdir / "results"), temporaries(workdir / "results")
    assert "Nothing to be done" in snakemake_run(workdir, "-n", target).stdout
    assert sha256(video) == before and sorted(os.listdir(workdir / "inputs")) == ["subject.mp4"]


# ---- checkpoints: truncated, hostile, of other data -----------------------------------------

def tiny_trainer(directory: Path, iters: int = 30) -> Trainer:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=gen)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])

    def step(_: int):
        i = torch.randint(0, 64, (16,), generator=gen)
        loss = ((model(x[i]) - y[i]) ** 2).mean()
        return loss, {}

    return Trainer(model=model, param_groups=[{"params": list(model.parameters()), "lr": 0.05}], step_fn=step,
                   iters=iters, lr_lambda=lambda it: 1.0, settings={"what": "tiny"}, checkpoint_dir=directory,
                   log_path=directory.parent / "log.csv", generator=gen, checkpoint_every=10)


class Killed(Exception):
    pass


def killed_at(step: int):
    def on_step_end(s: int) -> None:
        if s == step:
            raise Killed
    return on_step_end


def test_a_truncated_checkpoint_is_named_and_the_previous_one_is_used(tmp_path, caplog):
    straight = tiny_trainer(tmp_path / "straight" / "ckpt")
    straight.fit()
    ckpt = tmp_path / "run" / "ckpt"
    with pytest.raises(Killed):
        tiny_trainer(ckpt).fit(on_step_end=killed_at(25))
    newest = ckpt / "step_0000020.pt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])  # the disk filled up mid-write
    (ckpt / ".step_0000030.tmp-999999.pt").write_bytes(b"a save killed half way")
    with open(tmp_path / "run" / "log.csv", "a") as fh:
        fh.write("2")  # a log row the kill cut short

    again = tiny_trainer(ckpt)
    with caplog.at_level(logging.INFO, logger="ernerf_core.train.checkpoint"):
        assert again.resume()
    assert again.step == 10
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "step_0000020.pt" in warning[0] and "truncated or damaged" in warning[0]
    assert "resuming from step_0000010.pt (step 10)" in caplog.text
    again.fit()
    assert again.step == 30
    for p, q in zip(again.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert [s for s, _ in list_checkpoints(ckpt)] == [20, 30]
    assert not list(ckpt.glob(".*tmp*")), "a killed save's temporary was left"
    steps = [r.split(",")[0] for r in (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]]
    assert steps == [str(s) for s in range(10, 31, 10)] and steps == [
        r.split(",")[0] for r in (tmp_path / "straight" / "log.csv").read_text().splitlines()[1:]]


class Marker:
    """Unpickling this creates ``path``: proof that code from the file ran."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_checkpoint_with_a_pickle_payload_is_refused_and_never_runs(tmp_path, caplog):
    trainer = tiny_trainer(tmp_path / "ckpt", iters=10)
    trainer.fit()
    marker = tmp_path / "code_ran"
    hostile = {**trainer.state(), "payload": Marker(marker)}
    save_checkpoint(tmp_path / "ckpt", 20, hostile, keep=5)  # newest, with matching settings
    with caplog.at_level(logging.INFO, logger="ernerf_core.train.checkpoint"):
        state = load_latest(tmp_path / "ckpt", trainer.settings)
    assert state is not None and state["step"] == 10
    assert not marker.exists()
    assert "step_0000020.pt" in caplog.text and "weights-only loading refuses" in caplog.text


def test_a_model_file_with_a_pickle_payload_is_refused(tmp_path):
    from ernerf_core.model.io import FORMAT, read_head_file
    from ernerf_core.model.portrait import load_portrait

    marker = tmp_path / "code_ran"
    torch.save({"format": FORMAT, "config": {}, "state_dict": {}, "meta": Marker(marker)}, tmp_path / "model.pt")
    for load in (read_head_file, load_portrait):
        with pytest.raises(ValueError, match="weights-only loading refuses"):
            load(tmp_path / "model.pt")
    assert not marker.exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A synthetic subject whose head and torso trained 10 steps (one checkpoint each)."""
    from ernerf_core.train.head import HeadRun
    from ernerf_core.train.torso import train_torso

    root = tmp_path_factory.mktemp("trained")
    subj = make_synthetic_subject(root / "subject", n_frames=12, size=32, feature_dim=8)
    settings = {**HEAD, "iters": 10, "model": MODEL}
    run = HeadRun(stage="train_head", subject="synth", data_dir=subj.data_dir, work_dir=root / "head",
                  settings=settings, device="cpu")
    run.train()
    torso = {"iters": 10, "num_rays": 256, "downscale": 1, "checkpoint_every": 10, "final_val_frames": 1}
    train_torso(subject="synth", data_dir=subj.data_dir, model_path=root / "torso" / "model.pt",
                manifest_path=root / "torso.json", settings=torso, device="cpu")
    return {"root": root, "data": subj.data_dir, "head": settings, "torso": torso}


def resumed_steps(trained, data_dir: Path) -> tuple[int, int]:
    """The steps a new head run and a new torso run on ``data_dir`` resume at (0: afresh)."""
    from ernerf_core.train import torso as torso_stage
    from ernerf_core.train.head import HeadRun

    head = HeadRun(stage="train_head", subject="synth", data_dir=data_dir, work_dir=trained["root"] / "head",
                   settings=trained["head"], device="cpu").trainer.step
    s = torso_stage.resolve_settings(trained["torso"])
    train = torso_stage.SubjectDataset(data_dir, "train", downscale=s["downscale"], **torso_stage.TORSO_PARTS)
    key = settings_key(torso_stage.checkpoint_settings(s, train))
    state = load_latest(trained["root"] / "torso" / "checkpoints", key)
    return head, (state["step"] if state else 0)


def test_checkpoints_resume_on_the_same_data(trained):
    assert resumed_steps(trained, trained["data"]) == (10, 10)


@pytest.mark.parametrize(("changed", "expected"), [
    ("gt_imgs/0.jpg", (0, 10)),      # the head learns the frames; the torso learns torso_imgs
    ("torso_imgs/0.png", (0, 0)),
    ("lms/0.lms", (0, 10)),          # landmarks steer the head's rays; the torso reads none
    ("au.csv", (0, 10)),             # the eye track is the head's
    ("aud_mel.npy", (0, 10)),        # audio features are the head's
    ("transforms_train.json", (0, 0)),
])
def test_checkpoints_of_other_data_are_not_resumed(trained, tmp_path, changed, expected):
    data = tmp_path / "data"
    shutil.copytree(trained["data"], data)
    path = data / changed
    if path.suffix == ".npy":
        import numpy as np

        np.save(path, np.load(path) + 0.01)
    elif path.suffix in (".jpg", ".png"):
        import cv2

        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        img[:4] = 255 - img[:4]
        cv2.imwrite(str(path), img)
    else:
        path.write_text(path.read_text().replace("0.", "0.0", 1) + "\n")
    (tmp_path / "manifests").mkdir()
    shutil.copy(trained["data"].parent / "manifests" / "audio_features.json", tmp_path / "manifests")
    assert resumed_steps(trained, data) == expected


def test_the_torso_checkpoint_key_ignores_the_heads_model_section(trained):
    """The workflow passes the torso no `model` section; one passed by hand (an old config, the
    CLI) is dropped too, so the head's grid settings never restart the torso."""
    from ernerf_core.train import torso as torso_stage

    with_model = torso_stage.resolve_settings({**trained["torso"], "model": MODEL})
    assert with_model == torso_stage.resolve_settings(trained["torso"]) and "model" not in with_model
