"""Training presets (train.preset): the schedules they give, and that the stages train with them."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import REPO
from synthetic_subject import make_synthetic_subject
from test_torso import write_random_head

from ernerf_core.errors import StageError
from ernerf_core.train import schedule
from ernerf_core.train.dataset import split_size
from ernerf_core.train.head import HeadRun
from ernerf_core.train.torso import train_torso

SMALL = {"grids": {p: {"levels": 4, "features_per_level": 1, "log2_table_size": 10, "base_resolution": 8,
                       "finest_resolution": 32} for p in ("xy", "yz", "xz")}, "occupancy_resolution": 32}


@pytest.mark.parametrize("n_train, head, lips, torso", [
    (113, 3000, 500, 3000),  # a 5 s clip: the floor
    (1600, 6400, 1100, 6400),  # a 71 s clip: 4 steps a frame
    (10_000, 12_000, 2000, 12_000),  # several minutes: the cap
])
def test_cpu_preset_grows_with_the_frames_within_its_bounds(n_train, head, lips, torso):
    got = {stage: schedule.preset_schedule("cpu", stage, n_train, "cpu")["iters"] for stage in schedule.STAGES}
    assert got == {"train_head": head, "finetune_lips": lips, "train_torso": torso}


def test_auto_is_the_gpu_schedule_on_cuda_and_the_cpu_one_elsewhere():
    gpu = schedule.preset_schedule("auto", "train_head", 500, "cuda")
    cpu = schedule.preset_schedule("auto", "train_head", 500, "cpu")
    assert gpu == {**schedule.GPU["train_head"], "preset": "gpu"}
    assert (gpu["iters"], gpu["num_rays"], gpu["downscale"], gpu["lr"]) == (100_000, 65_536, 1.0, 0.01)
    assert cpu["preset"] == "cpu" and cpu["iters"] == 3000 and cpu["downscale"] == 2.0
    # preview ignores the length
    assert schedule.preset_schedule("preview", "train_head", 10_000, "cuda")["iters"] == 1200


def test_keys_set_in_the_stage_section_win_over_the_preset():
    out = schedule.apply_preset({"preset": "gpu", "iters": 50, "num_rays": None, "lips_share": 0.1},
                                "train_head", 100, "cpu")
    assert out == {"preset": "gpu", "iters": 50, "num_rays": 65_536, "downscale": 1.0, "lr": 0.01,
                   "lips_share": 0.1}
    assert schedule.apply_preset({"iters": None}, "train_head", 100, "cpu") == {"iters": None}  # no preset
    with pytest.raises(ValueError, match="train.preset 'fast' is not one of auto, preview, cpu, gpu"):
        schedule.apply_preset({"preset": "fast"}, "train_head", 100, "cpu")


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    return make_synthetic_subject(tmp_path_factory.mktemp("synth"), n_frames=12, size=32, feature_dim=8)


def test_split_size_counts_the_training_frames(subject, tmp_path):
    assert split_size(subject.data_dir, "train") == subject.n_train > 0
    assert split_size(tmp_path, "train") == 0


@pytest.mark.parametrize("preset, expected", [
    ("cpu", {"iters": 3000, "num_rays": 4096, "downscale": 2.0, "lr": 0.02, "preset": "cpu"}),
    ("auto", {"iters": 3000, "num_rays": 4096, "downscale": 2.0, "lr": 0.02, "preset": "cpu"}),
    ("gpu", {"iters": 100_000, "num_rays": 65_536, "downscale": 1.0, "lr": 0.01, "preset": "gpu"}),
])
def test_the_head_stage_trains_with_its_presets_schedule(subject, tmp_path, preset, expected):
    settings = {"preset": preset, "iters": None, "num_rays": None, "downscale": None, "lr": None, "model": SMALL}
    run = HeadRun(stage="train_head", subject="synth", data_dir=subject.data_dir, work_dir=tmp_path,
                  settings=settings, device="cpu")
    assert {k: run.s[k] for k in expected} == expected
    H, W = run.train_set.H, run.train_set.W  # noqa: N806
    assert run.trainer.iters == expected["iters"] and run.step_fn.sampler.num_rays == min(expected["num_rays"], H * W)
    assert run.train_set.H == round(32 / expected["downscale"])


def test_the_lips_and_torso_stages_take_their_presets_schedule(subject, tmp_path):
    head = write_random_head(tmp_path / "head" / "model.pt", subject.data_dir)
    lips = HeadRun(stage="finetune_lips", subject="synth", data_dir=subject.data_dir, work_dir=tmp_path / "l",
                   settings={"preset": "cpu", "iters": None, "patch_size": 4}, device="cpu", init_head=head)
    assert (lips.s["iters"], lips.s["preset"]) == (500, "cpu")
    # the torso: a real (tiny) run of the preview preset with its steps set, the rest the preset's
    train_torso(subject="synth", data_dir=subject.data_dir, model_path=tmp_path / "t" / "model.pt",
                      manifest_path=tmp_path / "t" / "manifest.json",
                      settings={"preset": "preview", "iters": 3, "num_rays": None, "downscale": None,
                                "final_val_frames": 1}, device="cpu")
    params = json.loads((tmp_path / "t" / "manifest.json").read_text())["params"]
    assert {k: params[k] for k in ("preset", "iters", "num_rays", "downscale")} == \
        {"preset": "preview", "iters": 3, "num_rays": 4096, "downscale": 2.0}


def test_an_unknown_preset_stops_the_stage_naming_the_key(subject, tmp_path):
    with pytest.raises(StageError, match="train.preset 'fast' is not one of"):
        HeadRun(stage="train_head", subject="synth", data_dir=subject.data_dir, work_dir=tmp_path,
                settings={"preset": "fast", "model": SMALL}, device="cpu")


def test_the_shipped_config_gives_the_demo_the_preview_preset_and_others_auto():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert config["train"]["preset"] == "auto"
    assert config["subjects"]["demo"]["overrides"] == {"train": {"preset": "preview"}}
    for stage in ("head", "lips", "torso"):
        assert all(config["train"][stage][k] is None for k in ("iters", "num_rays", "downscale"))
    assert config["render"]["downscale"] is None
