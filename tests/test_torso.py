"""The torso network, the train_torso stage and the portrait stage on the synthetic subject."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from synthetic_subject import make_synthetic_subject

from ernerf_core.errors import StageError
from ernerf_core.model.encoders import HashGridSpec, grid_layout
from ernerf_core.model.head import build_head
from ernerf_core.model.io import read_head_file, save_head
from ernerf_core.model.portrait import load_portrait
from ernerf_core.model.torso import TiledGrid2D, TorsoConfig, TorsoNet, pixel_coords, read_torso_file
from ernerf_core.train import torso as torso_stage
from ernerf_core.train.dataset import SubjectDataset
from ernerf_core.train.portrait import assemble_portrait


def write_random_head(path, data_dir, seed: int = 0):
    """An untrained head for the subject, saved exactly as train_head saves a trained one."""
    train = SubjectDataset(data_dir, "train", load_images=False)
    torch.manual_seed(seed)
    head = build_head({}, train.audio_shape, len(train))
    meta = {"audio": {"backend": train.audio_backend, "channels": train.audio_shape[1],
                      "window": train.audio_shape[0]},
            "scene": {"scale": 4.0, "offset": [0.0, 0.0, 0.0]},
            "data": {"H": train.full_size[0], "W": train.full_size[1],
                     "intrinsics": list(train.full_intrinsics), "n_train": len(train)},
            "train": {"stage": "finetune_lips", "id": f"random-{seed}", "steps": 0, "settings": {},
                      "metrics": {}}}
    save_head(path, head, meta)
    return path


def _pose(tz=3.0, yaw=0.0):
    c, s = np.cos(yaw), np.sin(yaw)
    pose = torch.eye(4)
    pose[:3, :3] = torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float32)
    pose[2, 3] = -tz
    return pose


# ---- network ------------------------------------------------------------------------------


def test_torso_forward_backward_shapes_and_finite_grads():
    torch.manual_seed(0)
    net = TorsoNet(TorsoConfig(individual_num=4))
    coords = pixel_coords(16, 24)
    assert coords.shape == (16 * 24, 2) and float(coords.abs().max()) < 1
    assert net.pixel_encoder.out_dim == 34 and net.pose_encoder.out_dim == 42 and net.grid.out_dim == 32
    alpha, rgb, offset = net(coords, _pose(), index=2)
    assert alpha.shape == (384, 1) and rgb.shape == (384, 3) and offset.shape == (384, 2)
    assert float(alpha.detach().min()) >= -0.001 and float(rgb.detach().max()) <= 1.001
    net.update_alpha_grid(_pose(), 2)
    out = net.composite(coords, _pose(), torch.rand(384, 3), index=2)
    assert out["rgb"].shape == (384, 3) and out["alpha"].shape == (384, 1)
    (out["rgb"].square().mean() + net.anchor_regulariser()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"{name} gets no gradient"


def test_torso_forward_is_the_mlps_on_the_whole_conditioning():
    """The first layers applied part by part (the frame's pose and code once) give what the
    reference's concatenated conditioning [pixel, pose, code] gives, values and gradients."""
    torch.manual_seed(0)
    net = TorsoNet(TorsoConfig(individual_num=3))
    with torch.no_grad():
        net.grid.table.uniform_(-1, 1)
    coords = pixel_coords(12, 10)

    def reference():
        x = coords * net.config.shrink
        n = x.shape[0]
        frame = torch.cat([net.pose_encoder(net.pose_code(_pose())), net.individual_code(1)])
        cond = torch.cat([net.pixel_encoder(x), frame.expand(n, -1)], dim=-1)
        offset = net.deform_net(cond)
        h = net.color_net(torch.cat([net.grid((x + offset).clamp(-1, 1)), cond], dim=-1))
        return torch.sigmoid(h[:, :1]) * 1.002 - 0.001, torch.sigmoid(h[:, 1:]) * 1.002 - 0.001, offset

    outs = {}
    for name, fn in (("ref", reference), ("net", lambda: net(coords, _pose(), index=1))):
        net.zero_grad()
        alpha, rgb, offset = fn()
        (alpha.sum() + rgb.square().sum() + offset.sum()).backward()
        outs[name] = [alpha.detach(), rgb.detach(), offset.detach(), net.deform_net[0].weight.grad.clone(),
                      net.color_net[0].weight.grad.clone(), net.individual_codes.grad.clone(),
                      net.anchor_points.grad.clone()]
    for a, b in zip(outs["net"][:3], outs["ref"][:3], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # gradients through the grid's position derivative jump where rounding moves a point across a
    # cell edge, so they are compared as whole tensors
    for a, b in zip(outs["net"][3:], outs["ref"][3:], strict=True):
        assert float((a - b).norm() / b.norm()) < 1e-3


def test_pose_code_moves_with_the_head():
    net = TorsoNet(TorsoConfig(individual_num=1))
    a, b = net.pose_code(_pose()), net.pose_code(_pose(yaw=0.2))
    assert a.shape == (6,) and not torch.allclose(a, b)
    # camera at z = -3 looking down +z: anchor (x, y, 0.1) projects to (x, y) / 3.1
    expected = [(0.01 / 3.1, 0.01 / 3.1), (-0.1 / 3.1, -0.1 / 3.1), (0.1 / 3.1, -0.1 / 3.1)]
    torch.testing.assert_close(a, torch.tensor(expected).flatten(), rtol=1e-5, atol=1e-6)


def test_tiled_grid_interpolates_its_table_and_has_position_gradients():
    spec = HashGridSpec(levels=3, features_per_level=2, log2_table_size=8, base_resolution=4,
                        finest_resolution=64)
    grid = TiledGrid2D(spec)
    lay = grid_layout(spec, 2)
    assert not lay[0]["hashed"] and lay[2]["hashed"]  # the finest level wraps (tiles) its table
    # Level 0 is dense: fill it with each vertex's own (gx, gy); bilinear interpolation of a
    # linear function is exact, so the features are the grid positions themselves
    # (torch-ngp: unit * scale + 0.5).
    with torch.no_grad():
        grid.table.zero_()
        stride = lay[0]["stride"]
        for gy in range(stride):
            for gx in range(stride):
                if gx + gy * stride < lay[0]["size"]:
                    grid.table[gx + gy * stride] = torch.tensor([gx, gy], dtype=torch.float32)
    x = torch.rand(200, 2) * 2 - 1
    feats = grid(x)
    assert feats.shape == (200, 6)
    unit = (x + 1) / 2
    torch.testing.assert_close(feats[:, :2], unit * lay[0]["scale"] + 0.5, rtol=0, atol=1e-5)
    # gradient w.r.t. positions = finite differences (random table, points inside cells)
    torch.manual_seed(0)
    torch.nn.init.uniform_(grid.table, -1, 1)
    x = (torch.rand(300, 2) * 2 - 1).requires_grad_()
    w = torch.randn(6)
    (grid(x) * w).sum().backward()
    eps = 1e-3
    for d in range(2):
        e = torch.zeros(2)
        e[d] = eps
        with torch.no_grad():
            fd = ((grid(x + e) - grid(x - e)) * w).sum(1) / (2 * eps)
        ok = (x.grad[:, d] - fd).abs() < 1e-2 * (1 + fd.abs())
        assert ok.float().mean() > 0.8  # the rest straddle a cell edge of the 64-cell level


def test_alpha_grid_skips_empty_pixels():
    torch.manual_seed(0)
    net = TorsoNet(TorsoConfig(individual_num=1, alpha_grid_size=16))
    coords = pixel_coords(32, 32)
    bg = torch.full((1024, 3), 0.5)
    out = net.composite(coords, _pose(), bg)  # grid never updated: nothing is evaluated
    assert torch.all(out["alpha"] == 0) and torch.all(out["rgb"] == 0.5)
    net.alpha_grid.zero_()
    net.alpha_grid[:, :6] = 1.0  # torso only in the left columns
    net.mean_alpha.fill_(net.alpha_grid.mean())
    out = net.composite(coords, _pose(), bg)
    right, left = coords[:, 0] > 0.0, coords[:, 0] < -0.4
    assert torch.all(out["alpha"][right] == 0) and torch.all(out["rgb"][right] == 0.5)
    assert torch.all(out["alpha"][left] != 0)
    everywhere = net.composite(coords, _pose(), bg, use_grid=False)["rgb"]
    torch.testing.assert_close(out["rgb"][left], everywhere[left], rtol=0, atol=1e-6)
    # refresh: max(old * 0.95, new), dilated
    net.alpha_grid.fill_(1.0)
    net.update_alpha_grid(_pose(), 0, generator=torch.Generator().manual_seed(0))
    assert torch.all(net.alpha_grid >= 0.95 - 1e-6)
    assert float(net.mean_alpha) == pytest.approx(float(net.alpha_grid.mean()))


# ---- stage --------------------------------------------------------------------------------

SETTINGS = {"iters": 40, "num_rays": 1024, "downscale": 1.0, "checkpoint_every": 10, "final_val_frames": 1,
            "val_frames": 1}


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    root = tmp_path_factory.mktemp("torso_subject")
    subj = make_synthetic_subject(root, n_frames=12, size=32, feature_dim=16)
    write_random_head(root / "lips" / "model.pt", subj.data_dir)
    return subj


def _train(subj, out_dir, **overrides):
    return torso_stage.train_torso(subject="synth", data_dir=subj.data_dir, model_path=out_dir / "model.pt",
                                   manifest_path=out_dir / "train_torso.json",
                                   settings={**SETTINGS, **overrides}, device="cpu")


def _log_losses(path):
    rows = [r.split(",") for r in path.read_text().splitlines()]
    col = rows[0].index("loss")
    return [float(r[col]) for r in rows[1:] if r[col]]


def test_train_torso_lowers_the_loss_and_writes_the_torso(subject, tmp_path):
    summary = _train(subject, tmp_path)
    losses = _log_losses(tmp_path / "train_log.csv")
    assert len(losses) == 4 and losses[-1] < 0.5 * losses[0]
    assert summary["torso_psnr"] > 20
    manifest = json.loads((tmp_path / "train_torso.json").read_text())
    assert manifest["steps"] == 40 and manifest["val"]["torso_psnr"] == summary["torso_psnr"]
    payload = read_torso_file(tmp_path / "model.pt")
    assert (payload["meta"]["H"], payload["meta"]["W"], payload["meta"]["n_train"]) == (32, 32, subject.n_train)
    torso = TorsoNet(TorsoConfig.from_dict(payload["config"]))
    torso.load_state_dict(payload["state_dict"])  # the file rebuilds the network exactly


def test_train_torso_with_mixed_precision(subject, tmp_path, monkeypatch):
    """train.mixed_precision: on (bfloat16 on a CPU): the torso's networks run under autocast,
    the loss still falls and the torso written is float32."""
    seen = set()
    original = TorsoNet.forward

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        seen.add(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else torch.float32)
        return out

    monkeypatch.setattr(TorsoNet, "forward", spy)
    summary = _train(subject, tmp_path, mixed_precision="on")
    assert torch.bfloat16 in seen
    losses = _log_losses(tmp_path / "train_log.csv")
    assert all(np.isfinite(losses)) and losses[-1] < 0.5 * losses[0] and summary["torso_psnr"] > 20
    payload = read_torso_file(tmp_path / "model.pt")
    assert all(v.dtype in (torch.float32, torch.bool) for v in payload["state_dict"].values())


def test_portrait_joins_head_and_torso_bit_for_bit(subject, tmp_path):
    _train(subject, tmp_path / "torso")
    summary = assemble_portrait(subject="synth", data_dir=subject.data_dir,
                                head_path=subject.root / "lips" / "model.pt",
                                torso_path=tmp_path / "torso" / "model.pt",
                                model_path=tmp_path / "portrait" / "model.pt",
                                manifest_path=tmp_path / "portrait.json",
                                val_frames=1, device="cpu")
    assert np.isfinite(summary["psnr"]) and summary["torso_psnr"] > 20
    assert json.loads((tmp_path / "portrait.json").read_text())["val"]["psnr"] == summary["psnr"]
    portrait = load_portrait(tmp_path / "portrait" / "model.pt")
    assert portrait.size == (32, 32) and portrait.background.shape == (32, 32, 3)
    assert portrait.poses.shape == (subject.n_train, 4, 4) and portrait.eye.shape == (subject.n_train,)
    assert portrait.audio["backend"] == "mel" and portrait.audio["feature_shape"][1:] == [16, 16]
    head = read_head_file(subject.root / "lips" / "model.pt")["state_dict"]
    for k, v in portrait.head.state_dict().items():
        assert torch.equal(v.cpu(), head[k]), k
    torso = read_torso_file(tmp_path / "torso" / "model.pt")["state_dict"]
    for k, v in portrait.torso.state_dict().items():
        assert torch.equal(v.cpu(), torso[k]), k


def test_train_torso_resumes_after_a_kill(subject, tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    _train(subject, straight, iters=30)
    killed = tmp_path / "killed"
    real_call = torso_stage.TorsoStep.__call__

    def dies_at_25(self, step):
        if step == 25:
            raise KeyboardInterrupt  # what a kill looks like from inside the loop
        return real_call(self, step)

    monkeypatch.setattr(torso_stage.TorsoStep, "__call__", dies_at_25)
    with pytest.raises(KeyboardInterrupt):
        _train(subject, killed, iters=30)
    assert not (killed / "model.pt").exists()
    kept = sorted(p.name for p in (killed / "checkpoints").iterdir())
    assert kept == ["step_0000010.pt", "step_0000020.pt"]
    monkeypatch.setattr(torso_stage.TorsoStep, "__call__", real_call)
    _train(subject, killed, iters=30)
    resumed, uninterrupted = _log_losses(killed / "train_log.csv"), _log_losses(straight / "train_log.csv")
    assert resumed == pytest.approx(uninterrupted, rel=1e-4)
    a = read_torso_file(straight / "model.pt")["state_dict"]
    b = read_torso_file(killed / "model.pt")["state_dict"]
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_portrait_refuses_missing_or_foreign_models(subject, tmp_path):
    _train(subject, tmp_path / "torso", iters=10)
    kwargs = {"subject": "synth", "model_path": tmp_path / "model.pt", "manifest_path": tmp_path / "m.json",
              "val_frames": 1, "device": "cpu"}
    with pytest.raises(StageError, match="missing.*finetune_lips"):
        assemble_portrait(data_dir=subject.data_dir, head_path=tmp_path / "none.pt",
                          torso_path=tmp_path / "torso" / "model.pt", **kwargs)
    with pytest.raises(StageError, match="missing.*train_torso"):
        assemble_portrait(data_dir=subject.data_dir, head_path=subject.root / "lips" / "model.pt",
                          torso_path=tmp_path / "none.pt", **kwargs)
    with pytest.raises(StageError, match="not a torso model"):
        assemble_portrait(data_dir=subject.data_dir, head_path=subject.root / "lips" / "model.pt",
                          torso_path=subject.root / "lips" / "model.pt", **kwargs)
    other = make_synthetic_subject(tmp_path / "other", n_frames=24, size=32, feature_dim=16)
    with pytest.raises(StageError, match="different data"):
        assemble_portrait(data_dir=other.data_dir, head_path=subject.root / "lips" / "model.pt",
                          torso_path=tmp_path / "torso" / "model.pt", **kwargs)
    write_random_head(tmp_path / "other_head.pt", other.data_dir)
    with pytest.raises(StageError, match="train_torso on this subject"):
        assemble_portrait(data_dir=other.data_dir, head_path=tmp_path / "other_head.pt",
                          torso_path=tmp_path / "torso" / "model.pt", **kwargs)
    assert not (tmp_path / "model.pt").exists()


@pytest.mark.parametrize("share", [0.0, 0.75])
def test_torso_ray_share_puts_that_share_of_the_rays_on_the_torso(subject, share):
    data = SubjectDataset(subject.data_dir, "train", subject="synth", stage="train_torso", downscale=1.0,
                          **torso_stage.TORSO_PARTS)
    s = torso_stage.resolve_settings({**SETTINGS, "num_rays": 2000, "torso_ray_share": share})
    step = torso_stage.TorsoStep(TorsoNet(torso_stage.torso_config(s, len(data))), data, s,
                                 generator=torch.Generator().manual_seed(0), device=torch.device("cpu"))
    pixels = step._pixels(2)
    on_torso = torch.from_numpy(data.torso_rgba(2)[..., 3].reshape(-1) > 0)[pixels]
    area = float((data.torso_rgba(2)[..., 3] > 0).mean())
    assert pixels.numel() == 2000 and 0.05 < area < 0.6
    assert float(on_torso.float().mean()) == pytest.approx(share + (1 - share) * area, abs=0.04)
