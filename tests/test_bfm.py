"""Backend bfm: converter, rasterizer and the fit, on a small morphable model written in the
Basel Face Model 2009 .mat layout (the procedural face as its mean, smooth random bases)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.io import savemat

from ernerf_core.demo.face_mesh import tesselation_triangles
from ernerf_core.preprocess.bfm import convert_bfm, load_bfm
from ernerf_core.preprocess.pose_math import euler_to_matrix, geodesic_deg
from ernerf_core.preprocess.rasterizer import interpolate, rasterize
from ernerf_core.preprocess.synthetic_face import make_sequence, neutral_face, write_subject
from ernerf_core.preprocess.tracking import track_head_pose

MICROMETRES = 1e5   # BFM geometry unit per decimetre


def smooth_fields(pos: np.ndarray, k: int, seed: int) -> np.ndarray:
    """[k, V, 3] smooth random displacement fields over the vertices."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        freq, phase, amp = rng.normal(0, 2, (3, 3)), rng.uniform(0, 6.3, 3), rng.normal(0, 1, 3)
        out.append(np.stack([amp[d] * np.sin(pos @ freq[d] + phase[d]) for d in range(3)], 1))
    return np.stack(out)


def albedo(pos: np.ndarray) -> np.ndarray:
    """A skin-ish texture with structure (so the photometric fit has something to see)."""
    base = np.array([200.0, 150.0, 120.0])
    return np.clip(base + 40 * np.sin(9 * pos[:, :1]) * np.cos(7 * pos[:, 1:2]), 0, 255)


def write_model(path, offset=(0.3, -0.2, 0.5)):
    mesh = neutral_face()[:468]
    v = len(mesh)
    shape_pc = smooth_fields(mesh, 6, 0).reshape(6, -1).T * 0.01 * MICROMETRES     # [3V, 6]
    tex_pc = smooth_fields(mesh, 4, 1).reshape(4, -1).T * 10.0
    savemat(path, {
        "shapeMU": ((mesh + offset) * MICROMETRES).reshape(-1, 1), "shapePC": shape_pc,
        "shapeEV": np.ones((6, 1)), "texMU": albedo(mesh).reshape(-1, 1), "texPC": tex_pc,
        "texEV": np.ones((4, 1)), "tl": tesselation_triangles().astype(np.float64) + 1,
        "segbin": np.zeros((v, 4)),   # present in the real file, ignored
    })
    return mesh


def test_convert_keeps_the_reference_units_and_centres_the_mean(tmp_path):
    mesh = write_model(tmp_path / "01_MorphableModel.mat")
    shapes = convert_bfm(tmp_path / "01_MorphableModel.mat", tmp_path / "bfm.npz")
    assert shapes["mean"] == (468, 3) and shapes["id_basis"] == (6, 468, 3) and shapes["tex_basis"] == (4, 468, 3)
    model = load_bfm("s", "tracking", tmp_path / "bfm.npz")
    np.testing.assert_allclose(model.mean, mesh - mesh.mean(0), atol=1e-5)
    assert model.triangles.min() == 0
    direct = load_bfm("s", "tracking", tmp_path / "01_MorphableModel.mat")
    np.testing.assert_allclose(direct.id_basis, model.id_basis, atol=1e-6)


def test_a_wrong_file_names_the_model_and_how_to_get_it(tmp_path):
    from ernerf_core.errors import StageError

    savemat(tmp_path / "x.mat", {"foo": np.zeros(3)})
    with pytest.raises(StageError, match=r"01_MorphableModel.mat.*faces.dmi.unibas.ch") as err:
        load_bfm("s", "tracking", tmp_path / "nope.mat")
    assert "\n" not in str(err.value)
    with pytest.raises(StageError, match="lacks shapeMU"):
        load_bfm("s", "tracking", tmp_path / "x.mat")


def test_rasterizer_covers_the_triangle_area_and_passes_gradients():
    v = torch.tensor([[2.0, 2.0, 5.0], [30.0, 4.0, 5.0], [10.0, 28.0, 5.0], [0, 0, 3.0], [40, 0, 3.0], [0, 40, 3.0]],
                     requires_grad=True)
    face_idx, bary = rasterize(v, torch.tensor([[0, 1, 2]]), 32, 32)
    assert abs(int((face_idx >= 0).sum()) - 356) <= 4                 # area 356 px
    colour = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1]] + [[1.0, 1, 1]] * 3, requires_grad=True)
    img = interpolate(colour, torch.tensor([[0, 1, 2]]), face_idx, bary)
    (img[..., 0] * torch.linspace(0, 1, 32)[None, :]).sum().backward()
    assert colour.grad[:3].abs().sum() > 0 and v.grad[:3].abs().sum() > 0
    # the nearer triangle wins where both cover a pixel
    face_idx, _ = rasterize(v.detach(), torch.tensor([[0, 1, 2], [3, 4, 5]]), 32, 32)
    assert int((face_idx == 0).sum()) < 356 and int((face_idx == 1).sum()) > 500


def test_bfm_backend_tracks_and_fits_the_texture(tmp_path):
    write_model(tmp_path / "01_MorphableModel.mat")
    model = load_bfm("s", "tracking", tmp_path / "01_MorphableModel.mat")
    seq = make_sequence(16, resolution=128, seed=8, expression_scale=0.0)
    write_subject(seq, tmp_path / "data", draw=False)
    # frames: the model itself at the true poses, with a texture away from its mean and dimmer
    # light, which the photometric fit has to find
    import cv2

    faces = torch.tensor(model.triangles)
    texture = 0.8 * (model.tex_mean + np.einsum("k,kvd->vd", np.array([1.5, -1.0, 0.5, 1.0]), model.tex_basis))
    for i in range(len(seq.rotation)):
        cam = (neutral_face()[:468] @ seq.rotation[i].T + seq.trans[i])
        uv = seq.clean_2d[i, :468]
        verts = torch.tensor(np.c_[uv, -cam[:, 2]])
        face_idx, bary = rasterize(verts, faces, 128, 128)
        img = interpolate(torch.tensor(texture), faces, face_idx, bary).numpy()
        img[face_idx.numpy() < 0] = 60
        cv2.imwrite(str(tmp_path / "data" / "ori_imgs" / f"{i}.jpg"), img[..., ::-1].astype(np.uint8))
    m = track_head_pose(subject="s", data_dir=tmp_path / "data", params_path=tmp_path / "data" / "track_params.pt",
                        preview_path=tmp_path / "preview" / "tracking.png",
                        manifest_path=tmp_path / "manifests" / "tracking.json", backend="bfm",
                        bfm_model=tmp_path / "01_MorphableModel.mat", focal_range=(1100, 1100))
    params = torch.load(tmp_path / "data" / "track_params.pt", weights_only=True)
    assert params["id"].shape == (1, 6)
    rot = euler_to_matrix(params["euler"].double()).numpy()
    from scipy.spatial.transform import Rotation

    offset = Rotation.from_matrix(np.einsum("nji,njk->nik", seq.rotation, rot)).mean().as_matrix()
    err = geodesic_deg(torch.from_numpy(rot), torch.from_numpy(seq.rotation @ offset)).numpy()
    raw = geodesic_deg(torch.from_numpy(rot), torch.from_numpy(seq.rotation)).numpy()
    assert np.median(raw) <= 1.0 and np.median(err) <= 0.75
    # landmark noise is 0.5 px per axis: a perfect fit leaves a mean error of 0.5 * sqrt(pi / 2) = 0.63 px
    assert m["reprojection_px"]["median"] <= 0.75
    photo = m["photometric_error"]
    assert photo["after"] < 0.7 * photo["before"]
