"""transforms: the reference's camera conventions, checked against an independent derivation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ernerf_core.errors import StageError
from ernerf_core.preprocess.pose_math import euler_to_matrix, matrix_to_euler
from ernerf_core.preprocess.transforms import write_transforms


def reference_rotation(a: float, b: float, c: float) -> np.ndarray:
    """The reference's euler2rot written out by hand: Rx(a) @ Ry(b) @ Rz(-c)."""
    rx = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rz = np.array([[math.cos(c), math.sin(c), 0], [-math.sin(c), math.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def test_euler_matches_the_reference_and_round_trips():
    rng = np.random.default_rng(0)
    euler = rng.uniform(-0.6, 0.6, (50, 3))
    ours = euler_to_matrix(torch.from_numpy(euler)).numpy()
    ref = np.stack([reference_rotation(*e) for e in euler])
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    back = matrix_to_euler(torch.from_numpy(ours)).numpy()
    np.testing.assert_allclose(back, euler, atol=1e-10)


def write_params(path, n, h=512, w=512, with_size=True, seed=0):
    rng = np.random.default_rng(seed)
    params = {"euler": torch.tensor(rng.uniform(-0.3, 0.3, (n, 3)), dtype=torch.float32),
              "trans": torch.tensor(np.c_[rng.normal(0, 0.2, (n, 2)), rng.uniform(-8, -6, n)], dtype=torch.float32),
              "focal": torch.tensor([1100.0]), "id": torch.zeros(1, 100), "exp": torch.zeros(n, 79)}
    if with_size:
        params["image_size"] = torch.tensor([h, w])
    torch.save(params, path)
    return params


def test_transforms_invert_the_head_pose_and_split_10_of_11(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    params = write_params(data / "track_params.pt", 23, h=450, w=450)
    m = write_transforms(subject="s", params_path=data / "track_params.pt", train_path=data / "transforms_train.json",
                         val_path=data / "transforms_val.json", manifest_path=tmp_path / "m.json")
    train = json.loads((data / "transforms_train.json").read_text())
    val = json.loads((data / "transforms_val.json").read_text())
    assert (m["train_frames"], m["val_frames"]) == (20, 3)        # int(23 * 10 / 11) = 20
    assert [f["img_id"] for f in train["frames"]] == list(range(20))
    assert [f["aud_id"] for f in val["frames"]] == [20, 21, 22]
    for doc in (train, val):
        assert doc["focal_len"] == pytest.approx(1100.0) and doc["cx"] == 225.0 and doc["cy"] == 225.0
    frames = train["frames"] + val["frames"]
    for i, f in enumerate(frames):
        c2w = np.array(f["transform_matrix"])
        r = reference_rotation(*params["euler"][i].double().tolist())
        t = params["trans"][i].double().numpy() / 10.0
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = r, t
        np.testing.assert_allclose(c2w @ w2c, np.eye(4), atol=1e-5)
        # the camera sits ~0.6-0.8 m from the head, looking at it (its -z axis points home)
        pos = c2w[:3, 3]
        assert 0.55 < np.linalg.norm(pos) < 0.85
        assert np.dot(-c2w[:3, 2], -pos / np.linalg.norm(pos)) > 0.95


def test_a_reference_made_params_file_reads_the_size_from_a_frame(tmp_path):
    import cv2

    data = tmp_path / "data"
    (data / "ori_imgs").mkdir(parents=True)
    cv2.imwrite(str(data / "ori_imgs" / "0.jpg"), np.zeros((300, 400, 3), np.uint8))
    write_params(data / "track_params.pt", 5, with_size=False)
    write_transforms(subject="s", params_path=data / "track_params.pt", train_path=data / "a.json",
                     val_path=data / "b.json", manifest_path=tmp_path / "m.json")
    doc = json.loads((data / "a.json").read_text())
    assert (doc["cx"], doc["cy"]) == (200.0, 150.0)


def test_bad_params_fail_clearly_and_write_nothing(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    kw = dict(subject="s", params_path=data / "track_params.pt", train_path=data / "a.json",
              val_path=data / "b.json", manifest_path=tmp_path / "m.json")
    with pytest.raises(StageError, match="run the tracking stage first"):
        write_transforms(**kw)
    write_params(data / "track_params.pt", 1)
    with pytest.raises(StageError, match="at least 2"):
        write_transforms(**kw)
    params = write_params(data / "track_params.pt", 4)
    params["trans"][2, 0] = float("nan")
    torch.save(params, data / "track_params.pt")
    with pytest.raises(StageError, match="non-finite"):
        write_transforms(**kw)
    (data / "track_params.pt").write_bytes(b"not a torch file")
    with pytest.raises(StageError, match="cannot read"):
        write_transforms(**kw)
    assert not (data / "a.json").exists() and not (data / "b.json").exists()
