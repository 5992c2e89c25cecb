"""SyncNet LSE-D / LSE-C: loading a user's weights file, the MFCC front end, the score."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from ernerf_core.errors import StageError
from ernerf_core.metrics.syncnet import CROP, face_crop, load_syncnet, lse, mfcc
from ernerf_core.render.test_split import render_test


def _reference_layout_state(seed=0, prefix="", drop_counters=True):
    """Random weights in syncnet_python's S layout, written down here from its layer list (not
    from our module), saved as its syncnet_v2.model is: a plain state dict."""
    torch.manual_seed(seed)
    bn2, bn3 = nn.BatchNorm2d, nn.BatchNorm3d
    aud = [(0, nn.Conv2d(1, 64, 3)), (1, bn2(64)), (4, nn.Conv2d(64, 192, 3)), (5, bn2(192)),
           (8, nn.Conv2d(192, 384, 3)), (9, bn2(384)), (11, nn.Conv2d(384, 256, 3)), (12, bn2(256)),
           (14, nn.Conv2d(256, 256, 3)), (15, bn2(256)), (18, nn.Conv2d(256, 512, (5, 4))), (19, bn2(512))]
    lip = [(0, nn.Conv3d(3, 96, (5, 7, 7))), (1, bn3(96)), (4, nn.Conv3d(96, 256, (1, 5, 5))), (5, bn3(256)),
           (8, nn.Conv3d(256, 256, (1, 3, 3))), (9, bn3(256)), (11, nn.Conv3d(256, 256, (1, 3, 3))),
           (12, bn3(256)), (14, nn.Conv3d(256, 256, (1, 3, 3))), (15, bn3(256)),
           (18, nn.Conv3d(256, 512, (1, 6, 6))), (19, bn3(512))]
    fc = [(0, nn.Linear(512, 512)), (1, nn.BatchNorm1d(512)), (3, nn.Linear(512, 1024))]
    state = {}
    for seq, layers in (("netcnnaud", aud), ("netcnnlip", lip), ("netfcaud", fc), ("netfclip", fc)):
        for i, layer in layers:
            if isinstance(layer, nn.modules.batchnorm._BatchNorm):  # trained-looking statistics
                layer.running_mean.normal_(0, 0.1)
                layer.running_var.uniform_(0.5, 2.0)
            for key, value in layer.state_dict().items():
                if drop_counters and key == "num_batches_tracked":
                    continue  # syncnet_v2.model predates PyTorch 0.4.1's counters
                state[f"{prefix}{seq}.{i}.{key}"] = value.clone()
    return state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(_reference_layout_state(), path)
    return path


def test_mfcc_is_100_hz_and_gain_moves_only_the_energy_term():
    t = np.arange(16000) / 16000
    wav = 0.1 * np.sin(2 * np.pi * 300 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    a, b = mfcc(wav), mfcc(2 * wav)
    assert a.shape == (99, 13)  # 1 + ceil((16000 - 400) / 160) frames of 25 ms every 10 ms
    np.testing.assert_allclose(b[:, 0] - a[:, 0], np.log(4), atol=1e-4)  # c0 = log frame energy
    np.testing.assert_allclose(b[:, 1:], a[:, 1:], atol=1e-3)  # a constant log shift is all in c0


def test_face_crop_is_224_bgr_around_the_face_box():
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[40:60, 40:60] = (255, 0, 0)  # a red face box
    crop = face_crop(frame, (40, 60, 40, 60))
    assert crop.shape == (CROP, CROP, 3)
    centre = crop[60, CROP // 2]  # the box sits in the upper part of the crop (it extends down)
    assert centre[2] == 255 and centre[0] == 0  # BGR: red is the last channel


def test_random_syncnet_through_the_real_loading_path_gives_finite_scores(weights):
    model = load_syncnet(weights)
    assert not model.training
    rng = np.random.default_rng(0)
    n = 8
    crops = rng.integers(0, 256, (n, CROP, CROP, 3), dtype=np.uint8)
    wav = 0.1 * rng.standard_normal(n * 640).astype(np.float32)
    out = lse(model, crops, wav, 16000, vshift=15)
    assert out["windows"] == n - 5
    assert np.isfinite(out["lse_d"]) and out["lse_d"] > 0
    assert np.isfinite(out["lse_c"]) and out["lse_c"] >= 0
    assert -15 <= out["offset_frames"] <= 15
    assert len(out["mean_dist_per_offset"]) == 31
    assert min(out["mean_dist_per_offset"]) == pytest.approx(out["lse_d"])
    with pytest.raises(ValueError, match="at least 6 frames"):
        lse(model, crops[:5], wav, 16000)


def test_prefixed_keys_and_counters_load_too(tmp_path):
    path = tmp_path / "prefixed.model"
    torch.save(_reference_layout_state(prefix="__S__.", drop_counters=False), path)
    model = load_syncnet(path)
    ref = _reference_layout_state()
    torch.testing.assert_close(model.state_dict()["netcnnlip.18.weight"], ref["netcnnlip.18.weight"])


@pytest.mark.parametrize("bad, message", [
    ("wrong_keys", "is not syncnet_python's S model (missing"),
    ("wrong_shape", "has other shapes"),
    ("not_torch", "is not a weights-only torch file"),
    ("missing", "does not exist"),
])
def test_bad_weights_fail_render_test_with_one_line(tmp_path, bad, message):
    path = tmp_path / "syncnet_v2.model"
    state = _reference_layout_state()
    if bad == "wrong_keys":
        state = {k.replace("netcnnlip", "lip_encoder"): v for k, v in state.items()}
        torch.save(state, path)
    elif bad == "wrong_shape":
        state["netfcaud.3.weight"] = torch.zeros(512, 512)
        torch.save(state, path)
    elif bad == "not_torch":
        path.write_text("not a model")
    with pytest.raises(StageError) as info:
        render_test(subject="synth", model_path=tmp_path / "none.pt", data_dir=tmp_path,
                    video_path=tmp_path / "t.mp4", side_by_side_path=tmp_path / "s.mp4",
                    sheet_path=tmp_path / "c.png", metrics_path=tmp_path / "m.json", device="cpu",
                    syncnet_weights=path)
    text = str(info.value)
    assert message in text and "render.syncnet_weights" in text and "\n" not in text
