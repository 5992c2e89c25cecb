"""Stage parsing: head/neck/torso/background maps in the reference's colour codes.

Default backend against the demo's ground-truth head mask; the BiSeNet backend through the
user-weights path with a randomly initialised network saved by the test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import truth_in_frames

from ernerf_core.errors import StageError
from ernerf_core.media.frames import frame_paths, read_rgb
from ernerf_core.preprocess.bisenet import CLASS_TO_REGION, BiSeNet, bisenet_regions, load_bisenet
from ernerf_core.preprocess.parsing import parse_faces
from ernerf_core.preprocess.parsing_codes import (
    BACKGROUND,
    CODES_BGR,
    HEAD,
    NECK,
    TORSO,
    read_parsing,
    write_parsing,
)


def truth_head_masks(demo_clip: dict, data: Path) -> np.ndarray:
    """The demo's head masks cropped and resized like the frames: bool [N, R, R]."""
    truth, _ = truth_in_frames(demo_clip, data)
    norm = json.loads((data.parent / "manifests" / "normalize.json").read_text())
    crop, res = norm["crop"], norm["resolution"]
    n, size = truth["mask_shape"][0], truth["mask_shape"][2]
    masks = np.unpackbits(truth["head_mask"], axis=-1, count=size).astype(bool)
    out = np.zeros((n, res, res), bool)
    for i in range(n):
        m = masks[i, crop["y"] : crop["y"] + crop["size"], crop["x"] : crop["x"] + crop["size"]]
        out[i] = cv2.resize(m.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA) > 0.5
    return out


def test_head_region_matches_the_demo_truth(face_subject, demo_clip):
    truth = truth_head_masks(demo_clip, face_subject)
    ious = []
    for i in range(len(truth)):
        head = read_parsing(face_subject / "parsing" / f"{i}.png") == HEAD
        ious.append((head & truth[i]).sum() / (head | truth[i]).sum())
    ious = np.array(ious)
    assert ious.mean() >= 0.9 and ious.min() >= 0.85, (ious.mean(), ious.min())


def test_parsing_pngs_use_only_the_reference_codes_in_anatomical_order(face_subject):
    manifest = json.loads((face_subject.parent / "manifests" / "parsing.json").read_text())
    paths = frame_paths(face_subject / "parsing", ".png")
    assert len(paths) == manifest["frames"] == len(frame_paths(face_subject / "ori_imgs"))
    bgr = cv2.imread(str(paths[0]))  # exactly as the reference reads it
    codes = {tuple(c) for c in np.unique(bgr.reshape(-1, 3), axis=0)}
    assert codes <= {tuple(c) for c in CODES_BGR} and len(codes) == 4
    labels = read_parsing(paths[0])
    rows = {lab: np.nonzero(labels == lab)[0].mean() for lab in (HEAD, NECK, TORSO)}
    assert rows[HEAD] < rows[NECK] < rows[TORSO]
    assert manifest["frames_without_head"] == [] and manifest["mean_region_share"]["neck"] > 0.01


def test_region_codes_round_trip(tmp_path):
    labels = np.array([[BACKGROUND, HEAD], [NECK, TORSO]], np.uint8)
    write_parsing(tmp_path / "0.png", labels)
    assert np.array_equal(read_parsing(tmp_path / "0.png"), labels)
    assert cv2.imread(str(tmp_path / "0.png"))[0, 1].tolist() == [255, 0, 0]  # head, BGR as in the reference


def test_missing_landmarks_fail_without_output(face_subject, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(face_subject / "ori_imgs", data / "ori_imgs")
    with pytest.raises(StageError, match="run the landmarks stage first"):
        parse_faces(
            subject="t", data_dir=data, parsing_dir=data / "parsing", manifest_path=tmp_path / "p.json"
        )
    np.save(data / "landmarks.npy", np.zeros((3, 478, 3), np.float32))
    with pytest.raises(StageError, match=r"shape \(3, 478, 3\)"):
        parse_faces(
            subject="t", data_dir=data, parsing_dir=data / "parsing", manifest_path=tmp_path / "p.json"
        )
    assert not (data / "parsing").exists() and not (tmp_path / "p.json").exists()


# ---- BiSeNet (the reference's network, user weights) -------------------------------------


def test_bisenet_class_map_is_the_references():
    # face_parsing/test.py: 1-13 and 17-18 red (head), 14-15 green (neck), 16 blue (torso)
    expected = [BACKGROUND] + [HEAD] * 13 + [NECK] * 2 + [TORSO] + [HEAD] * 2
    assert CLASS_TO_REGION.tolist() == expected


@pytest.fixture(scope="module")
def bisenet_weights(tmp_path_factory) -> tuple[Path, dict]:
    torch.manual_seed(0)
    net = BiSeNet()
    path = tmp_path_factory.mktemp("bisenet") / "79999_iter.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_bisenet_has_the_checkpoint_parameter_names(bisenet_weights):
    _, state = bisenet_weights
    for key in (
        "cp.resnet.conv1.weight",
        "cp.resnet.bn1.running_mean",
        "cp.resnet.layer1.0.conv1.weight",
        "cp.resnet.layer2.0.downsample.0.weight",
        "cp.resnet.layer4.1.bn2.weight",
        "cp.arm16.conv.conv.weight",
        "cp.arm16.conv_atten.weight",
        "cp.arm32.bn_atten.running_var",
        "cp.conv_head32.conv.weight",
        "cp.conv_head16.bn.bias",
        "cp.conv_avg.conv.weight",
        "ffm.convblk.conv.weight",
        "ffm.conv1.weight",
        "ffm.conv2.weight",
        "conv_out.conv.conv.weight",
        "conv_out.conv_out.weight",
        "conv_out16.conv_out.weight",
        "conv_out32.conv.bn.weight",
    ):
        assert key in state, key
    assert not any(k.startswith("cp.resnet.fc") for k in state)
    assert state["conv_out.conv_out.weight"].shape == (19, 256, 1, 1)
    assert state["cp.arm32.conv.conv.weight"].shape == (128, 512, 3, 3)


def test_bisenet_loads_user_weights_and_parses(bisenet_weights, face_subject, tmp_path):
    path, state = bisenet_weights
    net = load_bisenet("t", "parsing", path)
    loaded = net.state_dict()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert net(x).shape == (1, 19, 64, 64)
    regions = bisenet_regions(net, read_rgb(face_subject / "ori_imgs" / "0.jpg"))
    assert regions.shape == (128, 128) and set(np.unique(regions)) <= {BACKGROUND, HEAD, NECK, TORSO}

    # the whole stage through the config path, on three frames
    data = tmp_path / "data"
    (data / "ori_imgs").mkdir(parents=True)
    for i in range(3):
        shutil.copy(face_subject / "ori_imgs" / f"{i}.jpg", data / "ori_imgs" / f"{i}.jpg")
    manifest = parse_faces(
        subject="t",
        data_dir=data,
        parsing_dir=data / "parsing",
        manifest_path=tmp_path / "parsing.json",
        backend="bisenet",
        bisenet_weights=str(path),
    )
    assert manifest["frames"] == 3 and len(frame_paths(data / "parsing", ".png")) == 3
    assert np.array_equal(read_parsing(data / "parsing" / "0.png"), regions)


def test_bisenet_weights_missing_or_wrong_fail_clearly(tmp_path):
    with pytest.raises(StageError, match="bisenet_weights is not set"):
        load_bisenet("t", "parsing", None)
    with pytest.raises(StageError, match=r"BiSeNet weights .*nothere\.pth not found"):
        load_bisenet("t", "parsing", tmp_path / "nothere.pth")
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(StageError, match="is not a BiSeNet face-parsing checkpoint"):
        load_bisenet("t", "parsing", wrong)
