"""A tiny but complete ER-NeRF subject folder made from a known, audio-driven 3D scene.

API (stable; the torso/render tests use it too)::

    from tests.synthetic_subject import make_synthetic_subject
    subj = make_synthetic_subject(root, n_frames=24, size=64, feature_dim=16)
    subj.data_dir        # root/"data": the ER-NeRF subject folder (ERNERF_FACTS.md section 1)
    subj.manifest_dir    # root/"manifests" (audio_features.json with "backend")
    subj.signal          # [N] float, the per-frame "speech" signal in [0, 1] (mouth opening)
    subj.eye             # [N] float, AU45_r written to au.csv (0..2)
    subj.n_train         # int(N * 10 / 11)

The scene, in the renderer's world coordinates (x up in the image, y towards the camera,
z to the image's right; see ernerf_core.model.rays): an opaque textured ellipsoid "head"
inside the training AABB, lit by a fixed light, with a dark "mouth" patch whose height
follows ``signal`` and two "eyes" that close with the blink value; a static "torso" band
at the bottom of the frame and a textured background ``bc.jpg``. The camera orbits the
head slightly from frame to frame (as tracked head motion does). Audio features
``aud_<backend>.npy`` are ``[N, window, feature_dim]`` and carry ``signal`` linearly, so the
model can learn the audio -> mouth mapping. Everything is drawn with independent NumPy
code following the reference's conventions (pixel centres, OpenCV camera, transforms in
the OpenGL file convention with translation / 4), so it also checks the loader.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

# Head ellipsoid semi-axes (x: vertical, y: depth, z: horizontal) and camera distance.
AXES = np.array([0.42, 0.30, 0.34])
CAM_DIST = 2.4
MOUTH_X, MOUTH_HALF_W = -0.20, 0.12
EYE_X, EYE_Z = 0.10, 0.13
BACKEND_FILES = {"mel": "aud_mel.npy", "hubert": "aud_hu.npy", "wav2vec": "aud_eo.npy", "deepspeech": "aud.npy",
                 "phones": "aud_ph.npy", "mel_phones": "aud_mel_ph.npy"}


@dataclass
class SyntheticSubject:
    root: Path
    data_dir: Path
    manifest_dir: Path
    signal: np.ndarray
    eye: np.ndarray
    n_frames: int
    n_train: int
    size: int
    focal: float


def _rot(axis: str, a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def camera_pose(yaw: float, pitch: float, shift: np.ndarray) -> np.ndarray:
    """Renderer-convention camera-to-world [4, 4]: looks at the origin from +y, image up = +x."""
    base = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # columns: right, down, forward
    rot = _rot("x", yaw) @ _rot("z", pitch)  # orbit about the vertical (x) and horizontal (z) axes
    pose = np.eye(4)
    pose[:3, :3] = rot @ base
    pose[:3, 3] = rot @ np.array([0.0, CAM_DIST, 0.0]) + shift
    return pose


def file_matrix(pose: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """Inverse of the loader's nerf_matrix_to_ngp, written independently: file rows (y,z,x)."""
    out = np.eye(4)
    for file_row, ngp_row in ((0, 2), (1, 0), (2, 1)):
        out[file_row, :3] = pose[ngp_row, :3] * np.array([1.0, -1.0, -1.0])
        out[file_row, 3] = pose[ngp_row, 3] / scale
    return out


def _surface_colour(p: np.ndarray, n: np.ndarray, mouth_open: float, blink: float) -> np.ndarray:
    """Colour [M, 3] of head surface points p [M, 3] with normals n [M, 3]."""
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    skin = np.array([0.86, 0.64, 0.52])
    tex = 0.06 * np.sin(14 * x) * np.sin(11 * z) + 0.04 * np.cos(23 * z + 5 * x)
    col = np.clip(skin[None] + tex[:, None], 0, 1)
    hair = x > 0.28 - 0.05 * np.cos(6 * z)
    col[hair] = np.array([0.30, 0.20, 0.12]) + 0.05 * np.sin(40 * z[hair])[:, None]
    front = y > 0
    half_h = 0.015 + 0.07 * mouth_open
    mouth = front & (((x - MOUTH_X) / half_h) ** 2 + (z / MOUTH_HALF_W) ** 2 < 1)
    lips = front & ~mouth & (((x - MOUTH_X) / (half_h + 0.025)) ** 2 + (z / (MOUTH_HALF_W + 0.02)) ** 2 < 1)
    col[lips] = np.array([0.72, 0.30, 0.32])
    col[mouth] = np.array([0.25, 0.04, 0.06])
    eye_h = 0.045 * (1.0 - 0.85 * blink) + 0.004
    for side in (-1, 1):
        eye = front & (((x - EYE_X) / eye_h) ** 2 + ((z - side * EYE_Z) / 0.065) ** 2 < 1)
        col[eye] = np.array([0.95, 0.95, 0.92])
        pupil = eye & (((x - EYE_X) / min(eye_h, 0.03)) ** 2 + ((z - side * EYE_Z) / 0.03) ** 2 < 1)
        col[pupil] = np.array([0.10, 0.12, 0.20])
    light = np.array([0.5, 0.8, 0.3]) / np.linalg.norm([0.5, 0.8, 0.3])
    shade = 0.55 + 0.45 * np.clip(n @ light, 0, 1)
    return np.clip(col * shade[:, None], 0, 1)


def _render_head(pose: np.ndarray, focal: float, size: int, mouth_open: float, blink: float, ss: int = 2):
    """Head colour [S, S, 3] and coverage [S, S] with ss x ss supersampling."""
    offs = (np.arange(ss) + 0.5) / ss
    cols = np.zeros((size, size, 3))
    cover = np.zeros((size, size))
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    for dy in offs:
        for dx in offs:
            u, v = c + dx, r + dy  # continuous pixel coordinates (centre = +0.5)
            d_cam = np.stack([(u - size / 2) / focal, (v - size / 2) / focal, np.ones_like(u)], -1)
            d = d_cam.reshape(-1, 3) @ pose[:3, :3].T
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            o = pose[:3, 3]
            # ray / ellipsoid: |(o + t d) / a|^2 = 1
            oa, da = o / AXES, d / AXES
            A = (da * da).sum(1)
            B = 2 * (da * oa).sum(1)
            C = (oa * oa).sum() - 1
            disc = B * B - 4 * A * C
            hit = disc > 0
            t = (-B - np.sqrt(np.where(hit, disc, 0))) / (2 * A)
            hit &= t > 0
            p = o + t[:, None] * d
            n = p / AXES ** 2
            n /= np.linalg.norm(n, axis=1, keepdims=True)
            col = np.zeros((d.shape[0], 3))
            col[hit] = _surface_colour(p[hit], n[hit], mouth_open, blink)
            cols += col.reshape(size, size, 3)
            cover += hit.reshape(size, size)
    k = ss * ss
    return cols / k, cover / k


def _landmarks(pose: np.ndarray, focal: float, size: int, mouth_open: float, blink: float) -> np.ndarray:
    """68 iBUG-ordered landmarks [68, 2] (x = column, y = row) of the head's face features."""
    pts = []
    for a in np.linspace(-1.0, 1.0, 17):  # jaw
        pts.append((-0.05 - 0.30 * math.cos(a * 1.2), 0.31 * math.sin(a * 1.2)))
    for side in (-1, 1):  # brows 17-26 (left then right)
        for a in np.linspace(-1, 1, 5):
            pts.append((0.19 - 0.01 * a * a, side * EYE_Z + (0.06 * a if side > 0 else 0.06 * a)))
    for k in range(4):  # nose bridge 27-30
        pts.append((0.07 - 0.05 * k, 0.0))
    for a in np.linspace(-1, 1, 5):  # nostrils 31-35
        pts.append((-0.10, 0.04 * a))
    eye_h = 0.045 * (1.0 - 0.85 * blink) + 0.004
    for side in (-1, 1):  # eyes 36-47
        for ang in np.linspace(math.pi, -math.pi, 7)[:-1]:
            pts.append((EYE_X + eye_h * math.sin(ang), side * EYE_Z - 0.065 * math.cos(ang)))
    half_h = 0.015 + 0.07 * mouth_open
    for ang in np.linspace(math.pi, -math.pi, 13)[:-1]:  # outer lips 48-59
        pts.append((MOUTH_X + (half_h + 0.025) * math.sin(ang), -(MOUTH_HALF_W + 0.02) * math.cos(ang)))
    for ang in np.linspace(math.pi, -math.pi, 9)[:-1]:  # inner lips 60-67
        pts.append((MOUTH_X + half_h * math.sin(ang), -MOUTH_HALF_W * math.cos(ang)))
    xz = np.array(pts)
    y = AXES[1] * np.sqrt(np.clip(1 - (xz[:, 0] / AXES[0]) ** 2 - (xz[:, 1] / AXES[2]) ** 2, 0, 1))
    world = np.stack([xz[:, 0], y, xz[:, 1]], -1)
    cam = (world - pose[:3, 3]) @ pose[:3, :3]
    u = focal * cam[:, 0] / cam[:, 2] + size / 2
    v = focal * cam[:, 1] / cam[:, 2] + size / 2
    return np.stack([u - 0.5, v - 0.5], -1)


def make_synthetic_subject(root, n_frames: int = 24, size: int = 64, feature_dim: int = 16,
                           window: int = 16, backend: str = "mel", seed: int = 0) -> SyntheticSubject:
    """Write ``root/data`` (the subject folder) and ``root/manifests/audio_features.json``."""
    root = Path(root)
    data, manifests = root / "data", root / "manifests"
    for sub in ("ori_imgs", "lms", "gt_imgs", "torso_imgs", "parsing"):
        (data / sub).mkdir(parents=True, exist_ok=True)
    manifests.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    focal = 1.6 * size
    n = np.arange(n_frames)
    # speech-like mouth signal in [0, 1] and an occasional blink (AU45_r, 0..2)
    phase = rng.uniform(0, 2 * np.pi, 3)
    signal = 0.5 + 0.5 * np.sin(0.9 * n + phase[0]) * np.abs(np.sin(0.23 * n + phase[1]))
    signal = np.clip(signal + 0.15 * np.sin(2.3 * n + phase[2]), 0, 1)
    au = np.where((n % 11) == 5, 2.0, np.where((n % 11) == 6, 1.0, 0.1))
    blink = np.clip(au, 0, 2) / 2

    # background: smooth gradient with a pattern; torso: a band at the bottom
    r, c = np.meshgrid(np.linspace(0, 1, size), np.linspace(0, 1, size), indexing="ij")
    bg = np.stack([0.25 + 0.3 * c, 0.35 + 0.2 * r, 0.55 + 0.1 * np.sin(8 * c + 3 * r)], -1)
    torso_alpha = (r > 0.86 - 0.12 * np.cos(np.pi * (c - 0.5))).astype(np.float64)
    torso_rgb = np.stack([0.2 + 0.1 * np.sin(20 * c), 0.25 + 0.0 * c, 0.45 + 0.05 * r], -1)
    bg_u8 = (bg * 255).round().astype(np.uint8)
    cv2.imwrite(str(data / "bc.jpg"), cv2.cvtColor(bg_u8, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    bg = bg_u8 / 255.0

    frames = []
    for i in range(n_frames):
        yaw = 0.08 * math.sin(0.31 * i)
        pitch = 0.05 * math.sin(0.17 * i + 1.0)
        shift = np.array([0.02 * math.sin(0.13 * i), 0.0, 0.02 * math.cos(0.19 * i)])
        pose = camera_pose(yaw, pitch, shift)
        head, cover = _render_head(pose, focal, size, signal[i], blink[i])
        torso_over_bg = torso_rgb * torso_alpha[..., None] + bg * (1 - torso_alpha[..., None])
        gt = head + (1 - cover[..., None]) * torso_over_bg
        to_u8 = lambda a: (np.clip(a, 0, 1) * 255).round().astype(np.uint8)  # noqa: E731
        gt_bgr = cv2.cvtColor(to_u8(gt), cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(data / "gt_imgs" / f"{i}.jpg"), gt_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        cv2.imwrite(str(data / "ori_imgs" / f"{i}.jpg"), gt_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])
        torso_vis = torso_alpha * (cover < 0.5)
        rgba = np.concatenate([to_u8(torso_rgb), to_u8(torso_vis[..., None])], -1)
        cv2.imwrite(str(data / "torso_imgs" / f"{i}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
        parsing = np.full((size, size, 3), 255, np.uint8)
        parsing[torso_vis > 0] = (0, 0, 255)
        parsing[cover >= 0.5] = (255, 0, 0)
        cv2.imwrite(str(data / "parsing" / f"{i}.png"), cv2.cvtColor(parsing, cv2.COLOR_RGB2BGR))
        lms = _landmarks(pose, focal, size, signal[i], blink[i])
        np.savetxt(data / "lms" / f"{i}.lms", lms, fmt="%.3f")
        frames.append({"img_id": i, "aud_id": i, "transform_matrix": file_matrix(pose).tolist()})

    n_train = int(n_frames * 10 / 11)
    for name, part in (("transforms_train.json", frames[:n_train]), ("transforms_val.json", frames[n_train:])):
        (data / name).write_text(json.dumps({"focal_len": focal, "cx": size / 2, "cy": size / 2,
                                             "frames": part}, indent=1))
    with open(data / "au.csv", "w") as fh:
        fh.write("frame, timestamp, confidence, success, AU45_r\n")
        for i in range(n_frames):
            fh.write(f"{i + 1}, {i / 25:.2f}, 0.98, 1, {au[i]:.2f}\n")

    # features [N, window, C]: the signal around each frame along a fixed random direction
    basis = rng.normal(size=feature_dim)
    basis /= np.linalg.norm(basis)
    t = n[:, None] + (np.arange(window) - window // 2)[None] / window
    s = np.interp(t, n, signal)
    feats = s[..., None] * basis[None, None] * 3.0 + 0.05 * rng.normal(size=(n_frames, window, feature_dim))
    np.save(data / BACKEND_FILES[backend], feats.astype(np.float32))
    (manifests / "audio_features.json").write_text(json.dumps({
        "stage": "audio_features", "backend": backend, "shape": list(feats.shape)}))
    _write_wav(data / "aud.wav", signal)
    return SyntheticSubject(root=root, data_dir=data, manifest_dir=manifests, signal=signal, eye=au,
                            n_frames=n_frames, n_train=n_train, size=size, focal=focal)


def _write_wav(path: Path, signal: np.ndarray, sr: int = 16000) -> None:
    """16 kHz mono PCM whose loudness follows the signal (25 fps frames)."""
    import wave

    t = np.arange(int(len(signal) * sr / 25)) / sr
    env = np.interp(t * 25, np.arange(len(signal)), signal)
    pcm = (0.3 * env * np.sin(2 * np.pi * 180 * t) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes(pcm.tobytes())
