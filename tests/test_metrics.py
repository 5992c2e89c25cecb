"""Image and lip-sync metrics against values known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ernerf_core.metrics.lipsync import (
    audio_envelope,
    audio_swap_figure,
    block_bootstrap_indices,
    correlation_with_interval,
    lagged_correlation,
    lipsync_score,
    mean_with_interval,
    mouth_opening_from_landmarks,
    mouth_width_from_landmarks,
    pearson,
    spread_ratio,
    swap_shift,
)
from ernerf_core.metrics.lpips_metric import load_lpips_metric
from ernerf_core.metrics.psnr import psnr
from ernerf_core.metrics.ssim import ssim

SR = 16000


def test_psnr_of_known_noise():
    gt = np.full((32, 32, 3), 0.5)
    sign = np.where((np.indices((32, 32)).sum(0) % 2)[..., None] == 0, 1.0, -1.0)
    assert psnr(gt + 0.1 * sign, gt) == pytest.approx(20.0, abs=1e-9)  # MSE = 0.01
    gt8 = np.zeros((8, 8, 3), np.uint8)
    assert psnr(gt8 + 51, gt8) == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-9)
    assert psnr(gt8, gt8) == math.inf
    # a mask restricts the error to its pixels
    pred = gt8.copy()
    pred[:4] = 51
    mask = np.zeros((8, 8), bool)
    mask[4:] = True
    assert psnr(pred, gt8, mask=mask) == math.inf
    assert psnr(pred, gt8, mask=~mask) == pytest.approx(10 * math.log10(1 / 0.04))


def test_ssim_identical_is_one_and_noise_lowers_it():
    rng = np.random.default_rng(0)
    img = np.broadcast_to(np.linspace(40, 200, 48)[None, :, None], (48, 48, 3)).astype(np.uint8)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-12)
    noisy = np.clip(img.astype(int) + rng.integers(-30, 30, img.shape), 0, 255).astype(np.uint8)
    value = ssim(noisy, img)  # structure-free noise on a smooth image: far from 1
    assert 0 < value < 0.5
    assert ssim(img, noisy) == pytest.approx(value)


def test_mouth_opening_is_scale_invariant():
    lms = np.zeros((2, 478, 2))
    lms[:, 33], lms[:, 263] = (10, 50), (50, 50)  # eye corners 40 px apart
    lms[:, 13], lms[:, 14] = (30, 70), (30, 80)  # lips 10 px apart
    lms[1] *= 3  # same face, three times larger
    np.testing.assert_allclose(mouth_opening_from_landmarks(lms), [0.25, 0.25])


def test_mouth_width_is_scale_invariant():
    lms = np.zeros((2, 478, 2))
    lms[:, 33], lms[:, 263] = (10, 50), (50, 50)  # eye corners 40 px apart
    lms[:, 61], lms[:, 291] = (20, 75), (40, 75)  # mouth corners 20 px apart
    lms[1] *= 2
    np.testing.assert_allclose(mouth_width_from_landmarks(lms), [0.5, 0.5])


def _ar1(n, rng, phi=0.7):
    """A smooth series like a mouth track: neighbouring frames are correlated."""
    x = np.zeros(n)
    for i in range(1, n):
        x[i] = phi * x[i - 1] + rng.normal()
    return x


def test_block_bootstrap_resamples_contiguous_blocks():
    idx = block_bootstrap_indices(10, 50, 4, np.random.default_rng(0))
    assert idx.shape == (50, 10) and idx.min() >= 0 and idx.max() <= 9
    # inside each block of 4 the indices run on by one
    steps = np.diff(idx.reshape(50, -1)[:, :8].reshape(50, 2, 4), axis=2)
    assert np.all(steps == 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlation_interval_excludes_zero_for_a_related_pair_and_includes_it_for_noise(seed):
    rng = np.random.default_rng(seed)
    a, noise, other = _ar1(120, rng), _ar1(120, rng), _ar1(120, rng)
    related = correlation_with_interval(a, 0.6 * a + 0.8 * noise)
    assert related["frames"] == 120 and related["block"] == 5
    lo, hi = related["ci95"]
    assert 0 < lo < related["r"] < hi < 1
    unrelated = correlation_with_interval(a, other)
    lo, hi = unrelated["ci95"]
    assert lo < 0 < hi and lo < unrelated["r"] < hi
    # seeded: the same call gives the same interval; another seed a slightly different one
    assert correlation_with_interval(a, other)["ci95"] == unrelated["ci95"]
    assert correlation_with_interval(a, other, seed=1)["ci95"] != unrelated["ci95"]


def test_correlation_interval_counts_only_finite_pairs_and_widens_with_few_frames():
    rng = np.random.default_rng(3)
    a = _ar1(200, rng)
    b = 0.6 * a + 0.8 * _ar1(200, rng)
    b_holes = b.copy()
    b_holes[::4] = np.nan
    assert correlation_with_interval(a, b_holes)["frames"] == 150
    few = correlation_with_interval(a[:12], b[:12])
    many = correlation_with_interval(a, b)
    assert (few["ci95"][1] - few["ci95"][0]) > (many["ci95"][1] - many["ci95"][0])
    assert correlation_with_interval(a[:3], b[:3])["ci95"] is None
    assert correlation_with_interval(np.ones(20), b[:20]) == {"r": None, "frames": 20, "ci95": None, "block": 3}
    stats = mean_with_interval(np.r_[np.full(30, 2.0), np.nan])
    assert stats["mean"] == 2.0 and stats["frames"] == 30 and stats["ci95"] == [2.0, 2.0]


def test_spread_ratio_of_a_damped_mouth():
    truth = _ar1(100, np.random.default_rng(4))
    damped = 0.2 * truth + 5.0
    out = spread_ratio(damped, truth)
    assert out["ratio"] == pytest.approx(0.2) and out["frames"] == 100
    assert spread_ratio(np.full(100, 1.0), truth)["ratio"] == 0.0  # the average mouth


def test_audio_swap_figure_tells_a_model_that_ignores_audio_from_one_that_follows_it():
    rng = np.random.default_rng(5)
    n = 60
    truth = 0.05 * _ar1(n, rng) + 0.2
    source = (np.arange(n) + swap_shift(n)) % n
    assert swap_shift(n) == 30 and swap_shift(1) == 0
    pose_effect = 0.01 * np.sin(np.arange(n) / 5)  # what the pose alone does to the render
    # ignores audio: the swapped render is the same frame -> no movement at all
    deaf = pose_effect + 0.2
    figure = audio_swap_figure(deaf, deaf.copy(), truth, source)
    assert figure["ratio"] == 0.0 and figure["frames"] == n
    # follows audio: the swapped render shows the mouth of the frame whose audio it got
    own = truth + pose_effect
    swapped = truth[source] + pose_effect
    figure = audio_swap_figure(own, swapped, truth, source)
    assert figure["ratio"] == pytest.approx(1.0)
    assert figure["corr_with_source_truth"]["r"] > 0.95
    # follows at a fifth of the amplitude
    figure = audio_swap_figure(0.2 * own, 0.2 * swapped, truth, source)
    assert figure["ratio"] == pytest.approx(0.2)


def _modulated_speech(n_frames, seed=0):
    """A tone whose loudness follows a random per-frame envelope; returns (wav, envelope)."""
    rng = np.random.default_rng(seed)
    env = np.convolve(rng.random(n_frames + 4), np.ones(3) / 3, mode="same")[2:-2]
    t = np.arange(n_frames * SR // 25) / SR
    amp = np.interp(t * 25, np.arange(n_frames), env)
    return amp * np.sin(2 * np.pi * 220 * t), env


def test_audio_envelope_follows_loudness():
    wav, env = _modulated_speech(100)
    measured = audio_envelope(wav, SR, 100)
    assert measured.shape == (100,)
    assert pearson(measured, env) > 0.98  # RMS of a linearly interpolated amplitude
    assert audio_envelope(np.zeros(10), SR, 3).tolist() == [0.0, 0.0, 0.0]  # past the end = silence


def test_lipsync_correlation_on_synthetic_signals():
    wav, env = _modulated_speech(150)
    in_sync = env * 0.3 + 0.01
    score = lipsync_score(in_sync, wav, SR)
    assert score["audio_envelope_corr"] > 0.95 and score["lag_frames"] == 0
    assert score["frames"] == 150 and score["ci95"][0] > 0.8
    late = np.concatenate([np.full(2, in_sync[0]), in_sync[:-2]])  # mouth 2 frames behind
    corr, lag = lagged_correlation(late, audio_envelope(wav, SR, 150), max_lag=3)
    assert lag == 2 and corr > 0.95
    unrelated = np.random.default_rng(5).random(150)
    assert abs(lipsync_score(unrelated, wav, SR)["audio_envelope_corr"]) < 0.35
    # frames without a face (NaN) are skipped, not counted as zero
    holes = in_sync.copy()
    holes[::10] = np.nan
    assert lipsync_score(holes, wav, SR)["face_found_share"] == pytest.approx(0.9)
    assert lipsync_score(holes, wav, SR)["audio_envelope_corr"] > 0.95
    assert lipsync_score(np.full(150, np.nan), wav, SR)["audio_envelope_corr"] is None


def test_lpips_from_local_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    missing, reason = load_lpips_metric()
    assert missing is None and "alexnet-owt-7be5be79.pth" in reason and str(tmp_path) in reason
    # A random AlexNet trunk with torchvision's key names and shapes, where the real one goes.
    torch.manual_seed(0)
    shapes = {0: (64, 3, 11), 3: (192, 64, 5), 6: (384, 192, 3), 8: (256, 384, 3), 10: (256, 256, 3)}
    state = {}
    for i, (out_c, in_c, k) in shapes.items():
        state[f"features.{i}.weight"] = torch.randn(out_c, in_c, k, k) * (2 / (in_c * k * k)) ** 0.5
        state[f"features.{i}.bias"] = torch.zeros(out_c)
    path = tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    metric, reason = load_lpips_metric()
    assert reason is None
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    other = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert metric.distance(img, img) == pytest.approx(0.0, abs=1e-7)
    assert metric.distance(img, other) > 1e-4


def test_measured_mouth_opening_follows_the_demo_truth(demo_clip):
    """MediaPipe on the demo video finds the jaw motion the demo generator applied."""
    from ernerf_core.media import probe, run_ffmpeg
    from ernerf_core.metrics.lipsync import mouth_opening

    v = probe(demo_clip["video"]).video
    raw = run_ffmpeg(["-i", str(demo_clip["video"]), "-map", "0:v:0", "-f", "rawvideo",
                      "-pix_fmt", "rgb24", "pipe:1"]).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, v.height, v.width, 3)
    truth = np.load(demo_clip["truth"])["mouth_open"]
    opening = mouth_opening(frames)
    assert opening.shape == truth.shape
    assert np.isfinite(opening).mean() > 0.9
    # The suite's demo is 192 px (face ~50 px wide): measured 0.78 here, 0.94 at the demo's 512 px.
    assert pearson(opening, truth) > 0.7
