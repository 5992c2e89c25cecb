"""The real-clip regression script's config and report (the run itself is by hand: make regress-real)."""

from __future__ import annotations

import yaml

from benchmarks.driving_clip import driving_wav
from benchmarks.real_clip import summarize, write_config


def test_config_has_one_subject_with_the_standard_cpu_preset(tmp_path):
    from snakemake.utils import validate

    path = write_config(tmp_path, "anchor", tmp_path / "clip.mp4", None)
    assert path == tmp_path / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    assert cfg["subjects"] == {"anchor": {"video": str(tmp_path / "clip.mp4")}} and cfg["driving_audio"] == {}
    assert cfg["train"]["preset"] == "cpu"
    # the schedule keys stay null: the preset's, not the demo's
    assert all(cfg["train"][stage][k] is None for stage in ("head", "lips", "torso") for k in ("iters", "downscale"))
    validate(cfg, schema="workflow/schemas/config.schema.yaml", set_default=True)
    quick = yaml.safe_load(write_config(tmp_path / "q", "anchor", tmp_path / "clip.mp4", None, "preview").read_text())
    assert quick["train"]["preset"] == "preview" and quick["train"]["seed"] == 0
    seeded = yaml.safe_load(write_config(tmp_path / "s", "anchor", tmp_path / "clip.mp4", None, seed=3).read_text())
    assert seeded["train"]["seed"] == 3
    validate(seeded, schema="workflow/schemas/config.schema.yaml", set_default=True)


def test_report_reads_the_lipsync_block():
    metrics = {"frames": 161, "psnr": 27.0, "lmd": 2.0, "lmd_ci95": [1.9, 2.1],
               "lipsync": {"mouth_corr_truth": 0.3, "mouth_corr_truth_frames": 150,
                           "mouth_corr_truth_ci95": [0.1, 0.5],
                           "opening_spread": {"render_std": 0.01, "truth_std": 0.04, "ratio": 0.25},
                           "audio_swap": {"ratio": 0.05, "lips_rect_pixel_change": {"mean": 1.5}}}}
    out = summarize(metrics, 12.5)
    assert out["mouth_corr_ci95"] == [0.1, 0.5] and out["mouth_corr_frames"] == 150
    assert out["opening_std_ratio"] == 0.25 and out["audio_swap_ratio"] == 0.05
    assert out["audio_swap_lips_pixel_change"] == 1.5 and out["wall_s"] == 12.5


def test_driving_track_repeats_the_speech_with_silent_gaps(tmp_path):
    import numpy as np

    from ernerf_core.media.audio import write_wav

    speech = np.full(16000, 0.5, dtype=np.float32)  # 1 s
    write_wav(tmp_path / "s.wav", speech, 16000)
    wav, mask = driving_wav(tmp_path / "s.wav", seconds=5.0, gap=0.5)
    assert wav.shape == mask.shape == (80000,)
    assert mask[:16000].all() and not mask[16000:24000].any() and mask[24000:40000].all()
    assert np.all(wav[~mask] == 0) and np.all(np.abs(wav[mask]) > 0.4)
