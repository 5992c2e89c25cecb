"""The ER-NeRF subject folder as a training/validation split.

``SubjectDataset(data_dir, split)`` reads ``transforms_<split>.json`` and everything per frame
that the head and torso stages need (ERNERF_FACTS.md section 1):

- ``poses`` [N, 4, 4] float32, renderer convention (``nerf_matrix_to_ngp``, scale 4, offset 0)
- ``intrinsics`` (fx, fy, cx, cy) and ``H``, ``W`` at the training resolution (``downscale``)
- ``features`` [Na, C, W] float32 (the whole clip, channel-first) and ``aud_ids`` [N];
  ``audio_window(i) -> [8, C, W]`` (frames aud_id-4 .. aud_id+3, zero padded)
- ``eye`` [N] float32: AU45_r clipped to [0, 2] / 2
- ``landmarks`` [N, 68, 2] (x = column, y = row, training resolution); ``face_rect(i)``,
  ``lips_rect(i)`` as (row0, row1, col0, col1), half-open
- ``image(i)`` uint8 [H, W, 3] (gt_imgs), ``torso_rgba(i)`` uint8 [H, W, 4] (torso_imgs),
  ``background(i)`` uint8 [H, W, 3] (torso over bc.jpg: the head's background),
  ``bc`` uint8 [H, W, 3]

The torso reads only poses, frames and ``bc.jpg`` (``audio=False, face=False``: no features,
``au.csv`` or ``lms/``), so a new audio backend or blink detector leaves it alone.
``fingerprint()`` hashes every file the split was read from; checkpoints resume only on the
same fingerprint, so redone preprocessing (new frames, landmarks, features) trains afresh.

Memory: frames are held as their compressed file bytes (tens of KB each) and decoded on
access into uint8; decoded frames sit in an LRU cache bounded by ``cache_mb``. Nothing
holds a float copy of the video, so a 6,000-frame 512x512 subject stays well under 6 GB.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
import torch

from ..audio.features import AUDIO_FEATURE_FILE
from ..errors import StageError
from ..model.audio import ATT_WINDOW, audio_window
from ..model.rays import nerf_matrix_to_ngp

log = logging.getLogger(__name__)

FEATURE_FILES = AUDIO_FEATURE_FILE  # backend -> file name in the subject folder
LIPS = slice(48, 60)
MIN_LIPS_PX = 32


class FrameStore:
    """Compressed frames in memory, decoded to uint8 on access, with a byte-bounded LRU cache."""

    def __init__(self, paths: list[Path], *, flags: int, size: tuple[int, int] | None, cache_bytes: int):
        self.paths = list(paths)
        self.flags, self.size, self.cache_bytes = flags, size, int(cache_bytes)
        self.encoded = [np.fromfile(p, dtype=np.uint8) for p in self.paths]
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cached_bytes = 0

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def encoded_bytes(self) -> int:
        return sum(e.nbytes for e in self.encoded)

    def decode(self, i: int) -> np.ndarray:
        img = cv2.imdecode(self.encoded[i], self.flags)
        if img is None:
            raise ValueError(f"cannot decode {self.paths[i]}")
        if img.ndim == 3 and img.shape[2] == 3:
            img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        elif img.ndim == 3 and img.shape[2] == 4:
            img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA)
        if self.size is not None and img.shape[:2] != self.size:
            img = cv2.resize(img, (self.size[1], self.size[0]), interpolation=cv2.INTER_AREA)
        return img

    def __getitem__(self, i: int) -> np.ndarray:
        i = int(i)
        img = self._cache.get(i)
        if img is not None:
            self._cache.move_to_end(i)
            return img
        img = self.decode(i)
        if img.nbytes <= self.cache_bytes:
            self._cache[i] = img
            self._cached_bytes += img.nbytes
            while self._cached_bytes > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached_bytes -= old.nbytes
        return img


def find_features(data_dir: Path, manifest_path: Path | None = None) -> tuple[Path, str]:
    """The audio features file of a subject and its backend name.

    The backend comes from ``manifests/audio_features.json`` ("backend") when present, else
    from the single ``aud*.npy`` file in the folder.
    """
    data_dir = Path(data_dir)
    manifest_path = Path(manifest_path) if manifest_path else data_dir.parent / "manifests" / "audio_features.json"
    if manifest_path.exists():
        backend = json.loads(manifest_path.read_text()).get("backend")
        if backend in FEATURE_FILES:
            return data_dir / FEATURE_FILES[backend], backend
    present = [(b, data_dir / f) for b, f in FEATURE_FILES.items() if (data_dir / f).exists()]
    if len(present) == 1:
        return present[0][1], present[0][0]
    return data_dir / FEATURE_FILES["mel"], "mel" if not present else ""


def read_au45(path: Path) -> np.ndarray:
    """The ``" AU45_r"`` column of an OpenFace-style CSV (header names may carry spaces)."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header = [h.strip() for h in rows[0]]
    if "AU45_r" not in header:
        raise KeyError("AU45_r")
    col = header.index("AU45_r")
    return np.array([float(r[col]) for r in rows[1:] if len(r) > col], dtype=np.float32)


def _file_digest(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def split_size(data_dir, split: str = "train") -> int:
    """Frames listed in ``transforms_<split>.json`` (0 when it is missing or unreadable: the
    dataset that opens it next says what is wrong)."""
    try:
        return len(json.loads((Path(data_dir) / f"transforms_{split}.json").read_bytes()).get("frames") or [])
    except (OSError, ValueError, AttributeError):
        return 0


class SubjectDataset:
    """One split (``train`` or ``val``) of a subject folder. See the module docstring."""

    def __init__(self, data_dir, split: str = "train", *, subject: str = "subject", stage: str = "train_head",
                 features_path=None, downscale: float = 1.0, scale: float = 4.0, offset=(0.0, 0.0, 0.0),
                 cache_mb: float = 1024, load_images: bool = True, audio: bool = True, face: bool = True):
        self.data_dir = Path(data_dir)
        self.split, self.subject, self.stage = split, subject, stage
        self._digests: dict[str, str] = {}  # file -> sha256 of what was read (fingerprint(); frames aside)
        self._fail_if_missing(self.data_dir / f"transforms_{split}.json", "the transforms stage output")
        text = (self.data_dir / f"transforms_{split}.json").read_bytes()
        self._digests[f"transforms_{split}.json"] = hashlib.sha256(text).hexdigest()
        meta = json.loads(text)
        frames = meta.get("frames") or []
        if not frames:
            self._fail(f"transforms_{split}.json lists no frames", "rerun the transforms stage")
        self.img_ids = np.array([int(f["img_id"]) for f in frames])
        self.aud_ids_raw = np.array([int(f.get("aud_id", f["img_id"])) for f in frames])
        self.poses = torch.from_numpy(np.stack([
            nerf_matrix_to_ngp(np.array(f["transform_matrix"], dtype=np.float32), scale, offset) for f in frames]))

        # image size from the first frame; intrinsics scaled to the training resolution
        first = self.data_dir / "gt_imgs" / f"{self.img_ids[0]}.jpg"
        self._fail_if_missing(first, "the torso_gt stage output")
        H0, W0 = cv2.imread(str(first), cv2.IMREAD_UNCHANGED).shape[:2]
        self.full_size = (H0, W0)
        self.downscale = float(downscale)
        self.H, self.W = int(round(H0 / self.downscale)), int(round(W0 / self.downscale))
        sx, sy = self.W / W0, self.H / H0
        fl = float(meta["focal_len"])
        fx, fy = float(meta.get("fl_x", fl)), float(meta.get("fl_y", fl))
        self.full_intrinsics = (fx, fy, float(meta["cx"]), float(meta["cy"]))
        self.intrinsics = (fx * sx, fy * sy, float(meta["cx"]) * sx, float(meta["cy"]) * sy)

        self.features_path, self.audio_backend, self.audio_shape = None, None, None
        if audio:
            self._load_audio(features_path)
        if face:
            self._load_eye()
            self._load_landmarks(sx, sy)
        if load_images:
            self._load_images(int(cache_mb * 2 ** 20))

    # --- errors ----------------------------------------------------------------------------
    def _fail(self, problem: str, remedy: str):
        raise StageError(self.subject, self.stage, problem, remedy)

    def _fail_if_missing(self, path: Path, made_by: str):
        if not path.exists():
            self._fail(f"{path} is missing", f"run {made_by} first (or check the subject folder)")

    # --- loaders ---------------------------------------------------------------------------
    def _load_audio(self, features_path):
        path, backend = (Path(features_path), None) if features_path else find_features(self.data_dir)
        self.features_path = path
        self.audio_backend = backend or next((b for b, f in FEATURE_FILES.items() if f == path.name), "unknown")
        self._fail_if_missing(path, "the audio_features stage")
        self._digests[path.name] = _file_digest(path)
        feats = np.load(path)
        if feats.ndim == 2:  # [N, C]: one step per frame
            feats = feats[:, None, :]
        if feats.ndim != 3 or feats.shape[0] == 0:
            self._fail(f"{path.name} has shape {list(feats.shape)}, expected [frames, window, channels]",
                       "rerun the audio_features stage")
        if not np.isfinite(feats).all():
            self._fail(f"{path.name} contains NaN or infinite values", "rerun the audio_features stage")
        n_audio = feats.shape[0]
        needed = int(self.aud_ids_raw.max()) + 1
        # a frame or two short (rounding) is clamped as the reference does; more is a mismatch
        if needed - n_audio > max(2, 0.02 * needed):
            self._fail(f"{path.name} covers {n_audio} frames but the video has at least {needed}",
                       "the audio and video lengths disagree: rerun normalize and audio_features")
        self.audio_shape = (int(feats.shape[1]), int(feats.shape[2]))  # (W, C)
        self.features = torch.from_numpy(np.ascontiguousarray(feats.transpose(0, 2, 1), dtype=np.float32))
        self.aud_ids = np.minimum(self.aud_ids_raw, n_audio - 1)

    def _load_eye(self):
        path = self.data_dir / "au.csv"
        self._fail_if_missing(path, "the blink stage")
        self._digests["au.csv"] = _file_digest(path)
        try:
            au = read_au45(path)
        except (KeyError, ValueError, IndexError):
            self._fail("au.csv has no readable ' AU45_r' column", "rerun the blink stage")
        idx = np.minimum(self.img_ids, len(au) - 1)
        self.eye = torch.from_numpy(np.clip(au[idx], 0, 2) / 2).float()

    def _load_landmarks(self, sx: float, sy: float):
        lms = []
        for i in self.img_ids:
            p = self.data_dir / "lms" / f"{i}.lms"
            self._fail_if_missing(p, "the landmarks stage")
            self._digests[f"lms/{i}.lms"] = _file_digest(p)
            pts = np.loadtxt(p, dtype=np.float32).reshape(-1, 2)
            if pts.shape[0] != 68:
                self._fail(f"{p.name} has {pts.shape[0]} landmarks, expected 68", "rerun the landmarks stage")
            lms.append(pts)
        self.landmarks = np.stack(lms) * np.array([sx, sy], dtype=np.float32)

    def _load_images(self, cache_bytes: int):
        size = (self.H, self.W)
        gt = [self.data_dir / "gt_imgs" / f"{i}.jpg" for i in self.img_ids]
        torso = [self.data_dir / "torso_imgs" / f"{i}.png" for i in self.img_ids]
        for p in (gt[0], gt[-1], torso[0], torso[-1]):
            self._fail_if_missing(p, "the torso_gt stage")
        self._fail_if_missing(self.data_dir / "bc.jpg", "the background stage")
        # half the cache for each kind of frame
        self.gt_frames = FrameStore(gt, flags=cv2.IMREAD_COLOR, size=size, cache_bytes=cache_bytes // 2)
        self.torso_frames = FrameStore(torso, flags=cv2.IMREAD_UNCHANGED, size=size, cache_bytes=cache_bytes // 2)
        self._digests["bc.jpg"] = _file_digest(self.data_dir / "bc.jpg")
        bc = cv2.imread(str(self.data_dir / "bc.jpg"), cv2.IMREAD_COLOR)
        self.bc = cv2.resize(cv2.cvtColor(bc, cv2.COLOR_BGR2RGB), (self.W, self.H), interpolation=cv2.INTER_AREA)

    def fingerprint(self, frames: tuple[str, ...] = ("gt_imgs", "torso_imgs")) -> str:
        """Hash of every file this split was read from: transforms, features, ``au.csv``,
        ``lms/``, ``bc.jpg`` and the ``frames`` folders (for matching checkpoints to their data;
        the torso learns ``torso_imgs`` only)."""
        h = hashlib.sha256()
        for name, digest in sorted(self._digests.items()):
            h.update(f"{name}:{digest}\n".encode())
        if hasattr(self, "gt_frames"):
            stores = {"gt_imgs": self.gt_frames, "torso_imgs": self.torso_frames}
            for store in (stores[f] for f in frames):
                for path, data in zip(store.paths, store.encoded, strict=True):
                    h.update(f"{path.parent.name}/{path.name}:{data.nbytes}:".encode())
                    h.update(data.tobytes())
        return h.hexdigest()[:16]

    # --- per frame -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.img_ids)

    def audio_window(self, i: int) -> torch.Tensor:
        """[8, C, W] audio features around frame i."""
        return audio_window(self.features, int(self.aud_ids[i]), ATT_WINDOW)

    def image(self, i: int) -> np.ndarray:
        return self.gt_frames[i]

    def torso_rgba(self, i: int) -> np.ndarray:
        rgba = self.torso_frames[i]
        if rgba.ndim == 2 or rgba.shape[2] == 3:  # no alpha: fully opaque
            rgb = rgba if rgba.ndim == 3 else np.repeat(rgba[..., None], 3, -1)
            rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 255, np.uint8)], -1)
        return rgba

    def background(self, i: int) -> np.ndarray:
        """uint8 [H, W, 3]: the torso image composited over bc.jpg (the head's background)."""
        rgba = self.torso_rgba(i).astype(np.uint16)
        a = rgba[..., 3:]
        out = (rgba[..., :3] * a + self.bc.astype(np.uint16) * (255 - a) + 127) // 255
        return out.astype(np.uint8)

    def head_mask(self, i: int, threshold: int = 12, dilate: float = 0.03) -> np.ndarray:
        """bool [H, W]: where the frame differs from its head background (the head may be there),
        dilated by ``dilate`` x the image size so silhouettes err on the generous side."""
        diff = np.abs(self.image(i).astype(np.int16) - self.background(i).astype(np.int16)).max(axis=-1)
        mask = (diff > threshold).astype(np.uint8)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))  # drop JPEG specks
        r = max(1, int(round(dilate * max(self.H, self.W))))
        return cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0

    def _rect(self, pts: np.ndarray, min_size: int = 0) -> tuple[int, int, int, int]:
        r0, r1 = int(pts[:, 1].min()), int(pts[:, 1].max())
        c0, c1 = int(pts[:, 0].min()), int(pts[:, 0].max())
        return r0, r1, c0, c1

    def face_rect(self, i: int) -> tuple[int, int, int, int]:
        """Bounding box of all 68 landmarks (row0, row1, col0, col1), as the reference's face mask."""
        r0, r1, c0, c1 = self._rect(self.landmarks[i])
        return max(r0, 0), min(r1, self.H), max(c0, 0), min(c1, self.W)

    def lips_rect(self, i: int) -> tuple[int, int, int, int]:
        """Square around landmarks 48-59, at least 32 px (or the image), inside the image."""
        r0, r1, c0, c1 = self._rect(self.landmarks[i][LIPS])
        side = min(max(r1 - r0, c1 - c0, MIN_LIPS_PX), self.H, self.W)
        rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
        r0 = int(np.clip(rc - side // 2, 0, self.H - side))
        c0 = int(np.clip(cc - side // 2, 0, self.W - side))
        return r0, r0 + side, c0, c0 + side

    def frame_bytes(self) -> dict[str, float]:
        """Memory per frame: compressed bytes held, and decoded bytes of one cached frame."""
        n = max(len(self), 1)
        return {"encoded_per_frame": (self.gt_frames.encoded_bytes + self.torso_frames.encoded_bytes) / n,
                "decoded_per_frame": self.H * self.W * (3 + 4),
                "cache_limit": self.gt_frames.cache_bytes + self.torso_frames.cache_bytes}
