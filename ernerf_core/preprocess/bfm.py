"""The Basel Face Model 2009: read the user's ``01_MorphableModel.mat``, keep a compact .npz.

The .mat (registration-only licence, https://faces.dmi.unibas.ch/bfm/ -> "01_MorphableModel.mat")
holds ``shapeMU`` [3V, 1] and ``shapePC`` [3V, 199] in micrometres with ``shapeEV`` [199, 1]
(standard deviations), the same three for texture (``texMU`` 0..255), and ``tl`` [F, 3]
(1-based triangles). Like the reference's ``convert_BFM.py`` + ``Face_3DMM``, geometry is
divided by 1e5 (decimetres) and the mean is centred per axis; the bases are stored
pre-multiplied by their standard deviations, so coefficients are unit-variance. The
reference also needs an expression basis (``exp_info.npy``: ``mu_exp``, ``base_exp``,
``sig_exp``, same units); pass it when you have it, otherwise the fit has no expressions.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import StageError
from ..fsio import atomic_file

MAT_KEYS = ("shapeMU", "shapePC", "shapeEV", "texMU", "texPC", "texEV", "tl")
GEOMETRY_DIVISOR = 1e5     # micrometres -> decimetres, as the reference
OBTAIN = ("register at https://faces.dmi.unibas.ch/bfm/ (Basel Face Model 2009), download "
          "01_MorphableModel.mat and set tracking.bfm_model to its path (or use backend: landmarks, "
          "which needs no model file)")


@dataclass
class MorphableModel:
    mean: np.ndarray         # [V, 3] dm, centred
    id_basis: np.ndarray     # [Kid, V, 3] dm per unit coefficient
    exp_basis: np.ndarray    # [Ke, V, 3] (Ke may be 0)
    tex_mean: np.ndarray     # [V, 3] 0..255
    tex_basis: np.ndarray    # [Kt, V, 3]
    triangles: np.ndarray    # [F, 3] 0-based


def _read_mat(path: Path) -> dict[str, np.ndarray]:
    from scipy.io import loadmat

    raw = loadmat(path)
    missing = [k for k in MAT_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)} (not a BFM 2009 01_MorphableModel.mat)")
    return {k: np.asarray(raw[k]) for k in MAT_KEYS}


def _basis(pc: np.ndarray, ev: np.ndarray, dims: int, divisor: float) -> np.ndarray:
    k = min(dims, pc.shape[1])
    return (pc[:, :k] * ev.reshape(-1)[:k]).T.reshape(k, -1, 3) / divisor


def convert_bfm(mat_path: str | os.PathLike, out_path: str | os.PathLike, exp_path: str | os.PathLike | None = None,
                id_dims: int = 100, tex_dims: int = 100) -> dict[str, tuple[int, ...]]:
    """01_MorphableModel.mat (+ optional exp_info) -> compact float32 .npz; returns array shapes."""
    m = _read_mat(Path(mat_path))
    mean = m["shapeMU"].reshape(-1, 3) / GEOMETRY_DIVISOR
    exp_basis = np.zeros((0, len(mean), 3))
    if exp_path is not None:
        info = np.load(exp_path, allow_pickle=True)
        info = info.item() if info.dtype == object else dict(info)
        mean = mean + np.asarray(info["mu_exp"]).reshape(-1, 3) / GEOMETRY_DIVISOR
        base = np.asarray(info["base_exp"])                         # [Ke, 3V]
        exp_basis = (base * np.asarray(info["sig_exp"]).reshape(-1, 1)).reshape(len(base), -1, 3) / GEOMETRY_DIVISOR
    arrays = dict(mean=mean - mean.mean(0), id_basis=_basis(m["shapePC"], m["shapeEV"], id_dims, GEOMETRY_DIVISOR),
                  exp_basis=exp_basis, tex_mean=m["texMU"].reshape(-1, 3),
                  tex_basis=_basis(m["texPC"], m["texEV"], tex_dims, 1.0),
                  triangles=m["tl"].astype(np.int64) - 1)
    arrays = {k: v.astype(np.int64 if k == "triangles" else np.float32) for k, v in arrays.items()}
    with atomic_file(out_path) as tmp:
        np.savez(tmp, **arrays)
    return {k: v.shape for k, v in arrays.items()}


def load_bfm(subject: str, stage: str, path: str | os.PathLike | None) -> MorphableModel:
    """The model from a .mat or a converted .npz; StageError naming the file and how to get it."""
    if path is None:
        raise StageError(subject, stage, "backend bfm needs the Basel Face Model file 01_MorphableModel.mat "
                         "(tracking.bfm_model is not set)", OBTAIN)
    path = Path(path)
    if not path.exists():
        raise StageError(subject, stage, f"Basel Face Model file {path} (01_MorphableModel.mat) not found", OBTAIN)
    try:
        if path.suffix == ".npz":
            z = np.load(path)
            arrays = {k: z[k] for k in ("mean", "id_basis", "exp_basis", "tex_mean", "tex_basis", "triangles")}
        else:
            m = _read_mat(path)
            arrays = dict(mean=m["shapeMU"].reshape(-1, 3) / GEOMETRY_DIVISOR,
                          id_basis=_basis(m["shapePC"], m["shapeEV"], 100, GEOMETRY_DIVISOR),
                          exp_basis=np.zeros((0, len(m["shapeMU"]) // 3, 3)), tex_mean=m["texMU"].reshape(-1, 3),
                          tex_basis=_basis(m["texPC"], m["texEV"], 100, 1.0), triangles=m["tl"].astype(np.int64) - 1)
            arrays["mean"] = arrays["mean"] - arrays["mean"].mean(0)
    except (ValueError, KeyError, OSError) as err:
        raise StageError(subject, stage, f"cannot read the Basel Face Model {path}: {err}", OBTAIN) from None
    return MorphableModel(**{k: np.asarray(v, dtype=np.int64 if k == "triangles" else np.float64)
                             for k, v in arrays.items()})


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bfm-convert", help="01_MorphableModel.mat (BFM 2009) -> compact .npz for backend bfm")
    p.add_argument("mat", help="01_MorphableModel.mat")
    p.add_argument("out", help="output .npz")
    p.add_argument("--exp-info", help="expression basis (exp_info.npy with mu_exp, base_exp, sig_exp)")
    p.set_defaults(func=lambda args: convert_bfm(args.mat, args.out, args.exp_info))
