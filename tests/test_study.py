"""The refinement study (target ``study``): its table logic, the error-map picture's numbers,
the plans of the shipped configs, and a reduced study run end to end on the tiny subject."""

from __future__ import annotations

import copy
import csv
import math
import re
import subprocess

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO
from test_workflow import planned_jobs as planned
from test_workflow import snakemake as run_snakemake

from ernerf_core.study.head import pixel_density, write_curve
from ernerf_core.study.table import METRICS, Stat, aggregate, beyond_spread, describe, metric_value, statements
from ernerf_core.train.error_map import ErrorMap

METRIC = {m.key: m for m in METRICS}

# The reduced study: 2 variants x 2 seeds on .test/config.yaml's tiny subject, a few dozen
# steps, lip fine-tuning included (4 steps), every val frame measured at the 96 px frame size.
REDUCED_STUDY = {
    "seeds": 2, "iters": 24, "lips_iters": 4, "curve_points": 3, "curve_frames": 1, "downscale": 1.0,
    "baseline": "l2",
    "variants": {"l2": {"loss": "l2", "error_map": False}, "l1_errmap": {"loss": "l1", "error_map": True}},
}


def planned_variants(proc: subprocess.CompletedProcess, rule: str) -> list[str]:
    """The variant wildcard of each planned job of ``rule`` (dry run with -p style listing)."""
    text = proc.stdout + proc.stderr
    blocks = re.split(r"\n(?=(?:local)?rule \w+:)", text)
    return sorted(re.search(r"variant=([\w-]+)", b).group(1) for b in blocks
                  if re.match(rf"(?:local)?rule {rule}:", b.strip()))


# --- table logic ---------------------------------------------------------------------------

def _runs(values: dict[str, list[float]], key: str = "psnr") -> dict[str, list[dict]]:
    return {v: [{key: x} for x in xs] for v, xs in values.items()}


def test_statements_separate_differences_beyond_the_seed_spread():
    stats = aggregate(_runs({"a": [30.0, 30.1, 29.9], "b": [28.0, 28.1, 27.9], "c": [29.9, 30.2, 29.6]}))
    best, *_ = [t for t in statements(stats) if t.startswith("**PSNR")]
    assert "best `a`" in best
    behind, within = best.split("Behind it by more than the seed-to-seed spread:")[1].split("Within the spread")
    assert "`b` (-2.00)" in behind and "`c`" not in behind
    assert "`c`" in within and "`b`" not in within
    # the rule itself: mean +- sd ranges that do not overlap
    assert beyond_spread(Stat([1.0, 1.2]), Stat([1.5, 1.7])) is True
    assert beyond_spread(Stat([1.0, 1.4]), Stat([1.5, 1.7])) is False
    assert beyond_spread(Stat([1.0]), Stat([2.0, 2.1])) is None
    # no spread, and a difference below what the column shows (model sizes a few bytes apart)
    size = next(m for m in METRICS if m.key == "model_mb")
    assert beyond_spread(Stat([12.7201, 12.7201]), Stat([12.7203, 12.7203])) is True
    assert beyond_spread(Stat([12.7201, 12.7201]), Stat([12.7203, 12.7203]), size) is False


def test_lower_is_better_metrics_and_the_baseline_comparison():
    stats = aggregate(_runs({"base": [3.0, 3.1], "good": [2.0, 2.1], "bad": [4.0, 4.1], "same": [3.05, 3.0]},
                            key="lmd"))
    text = next(t for t in statements(stats, baseline="base") if t.startswith("**LMD"))
    assert "best `good`" in text
    against = text.split("Against the baseline `base`:")[1]
    assert "better beyond the spread: `good` (-1.000)" in against
    assert "worse beyond the spread: `bad` (+1.000)" in against
    assert "`same`" not in against


def test_one_seed_assesses_no_difference():
    stats = aggregate(_runs({"a": [30.0], "b": [20.0]}))
    text = next(t for t in statements(stats) if t.startswith("**PSNR"))
    assert "no difference is assessed" in text and "Behind it" not in text


def test_metric_values_come_from_the_top_level_lipsync_or_an_interval():
    m = {"psnr": 30.5, "lmd": None, "lipsync": {"mouth_corr_truth": 0.8, "audio_envelope_corr": {"r": 0.4}}}
    assert metric_value(m, "psnr") == 30.5
    assert math.isnan(metric_value(m, "lmd")) and math.isnan(metric_value(m, "lpips"))
    assert metric_value(m, "mouth_corr_truth") == 0.8
    assert metric_value(m, "audio_envelope_corr") == 0.4
    assert describe({"loss": "l1", "error_map": False, "grids": {"levels": 16}}) == \
        "error_map=false, grids.levels=16, loss=l1"


# --- the error-map picture's numbers and the learning curve ---------------------------------

def test_pixel_density_is_where_the_error_map_draws_rays():
    emap = ErrorMap(1, 32, 48, cells=4, uniform_share=0.25)
    emap.grid[0] = 0.01
    emap.grid[0, 1, 2] = 1.0  # one cell (rows 8-15, cols 24-35) with a large loss
    density = pixel_density(emap, 0)
    assert density.shape == (32, 48)
    assert density.mean() == pytest.approx(1.0, rel=1e-5)  # a rate relative to uniform
    assert density[8:16, 24:36].min() > 5 * density[:8].max()
    # and it is the sampler's own rate: draw many rays and count
    px = emap.sample_pixels(0, 200_000, torch.Generator().manual_seed(0))
    counts = np.bincount(px.numpy(), minlength=32 * 48).reshape(32, 48)
    assert counts[8:16, 24:36].mean() / counts.mean() == pytest.approx(density[8:16, 24:36].mean(), rel=0.03)


def test_learning_curve_keeps_the_validation_rows(tmp_path):
    log = tmp_path / "train_log.csv"
    log.write_text("step,elapsed_s,lr,loss,val_psnr,val_loss\n10,1.0,0.01,0.1,,\n10,1.0,0.01,,21.5,0.02\n"
                   "20,2.0,0.01,0.09,,\n20,2.0,0.01,,23.0,0.01\n")
    assert write_curve(log, tmp_path / "curve.csv") == 2
    with open(tmp_path / "curve.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["step"], r["val_psnr"]) for r in rows] == [("10", "21.5"), ("20", "23.0")]


# --- the workflow ---------------------------------------------------------------------------

def test_shipped_configs_plan_the_study(tmp_path):
    """The schema's default study (11 variants x 3 seeds, head only) and config/study.yaml."""
    default = tmp_path / "default"
    default.mkdir()
    (default / "config.yaml").write_text((REPO / "config" / "config.yaml").read_text())
    jobs = planned(run_snakemake(default, "-n", "study"))
    assert jobs["study_head"] == 33 and jobs["study_metrics"] == 33 and jobs["study"] == 1, jobs
    assert "study_lips" not in jobs

    demo = tmp_path / "demo"
    demo.mkdir()
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    study = yaml.safe_load((REPO / "config" / "study.yaml").read_text())
    (demo / "config.yaml").write_text(yaml.safe_dump({**config, **study}))
    jobs = planned(run_snakemake(demo, "-n", "study"))
    n = len(study["study"]["variants"]) * study["study"]["seeds"]
    assert jobs["study_head"] == n and jobs["study_metrics"] == n, jobs


@pytest.mark.slow
def test_reduced_study_end_to_end_report_and_one_variant_rerun(tmp_path):
    config = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    config["driving_audio"] = {}
    config["study"] = copy.deepcopy(REDUCED_STUDY)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "--cores", "2", "study")

    study = tmp_path / "results/demo/study"
    with open(study / "table.csv", newline="") as fh:
        rows = {r["variant"]: r for r in csv.DictReader(fh)}
    assert set(rows) == {"l2", "l1_errmap"}
    for variant, row in rows.items():
        assert row["seeds"] == "2"
        for key in ("psnr", "psnr_head", "ssim", "train_seconds", "steps_per_s", "model_mb"):
            for stat in ("mean", "sd"):
                assert math.isfinite(float(row[f"{key}_{stat}"])), (variant, key, stat, row)
        assert 5 < float(row["psnr_mean"]) < 60
    for key in ("psnr", "ssim", "model_mb"):
        assert sorted(r[f"{key}_best"] for r in rows.values()) == ["0", "1"], key
    md = (study / "table.md").read_text()
    assert "| `l2` |" in md and "| `l1_errmap` |" in md and "**PSNR (dB)** (higher is better): best" in md

    for png in ("learning_curves.png", "bars/psnr.png", "bars/ssim.png", "bars/model_mb.png",
                "error_maps/l1_errmap.png"):
        assert (study / png).read_bytes()[:4] == b"\x89PNG", png
    assert not (study / "error_maps/l2.png").exists()  # trained without an error map
    curve = (study / "l2/seed0/head/curve.csv").read_text().splitlines()
    assert len(curve) == 1 + 3 and curve[-1].startswith("24,")  # every 8 steps, the last at 24
    with np.load(study / "l1_errmap/seed0/head/error_map.npz") as z:
        assert int(z["enabled"]) == 1 and z["density_mean"].mean() == pytest.approx(1.0, rel=1e-3)
    lips = (study / "l2/seed1/lips/manifest.json").read_text()
    assert '"steps": 4' in lips

    run_snakemake(tmp_path, "--report", "report.html", "study")
    report = (tmp_path / "report.html").read_text(errors="replace")
    for name in ("table.html", "learning_curves.png", "psnr.png", "l1_errmap.png"):
        assert name in report, name

    # one variant's overrides change: only that variant's runs (and the table) are planned
    config["study"]["variants"]["l1_errmap"]["loss"] = "smooth_l1"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    dry = run_snakemake(tmp_path, "-n", "study")
    assert planned(dry) == {"study_head": 2, "study_lips": 2, "study_metrics": 2, "study": 1}, planned(dry)
    assert planned_variants(dry, "study_head") == ["l1_errmap", "l1_errmap"]
