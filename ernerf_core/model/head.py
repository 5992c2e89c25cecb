"""The ER-NeRF head: a region-aware tri-plane NeRF conditioned on audio and eye blink.

Architecture (ERNERF_FACTS.md section 2): three 2D hash grids on the xy/yz/xz projections;
``AudioNet`` + ``AudioAttNet`` give a 32-d audio code; at each point an MLP gives
per-channel attention on the audio code and a sigmoid gate on the eye value; a bias-free
density MLP (exp activation) and a colour MLP on SH-encoded view direction, geometry
feature and a per-frame individual code; an uncertainty MLP on detached features.

Public API (stable, used by the torso and render stages):

- ``build_head(model_cfg, audio_shape=(W, C), n_individual=N) -> HeadNetwork``
  ``model_cfg`` is the ``model:`` config section (see :func:`head_config_from_dict`).
- ``HeadNetwork.encode_audio(windows [8, C, W] or [B, 8, C, W]) -> [1 or B, 32]``
- ``HeadNetwork.forward(x [P,3], d [P,3], enc_a [1,32], ind_code [4] | None, eye [1,1] | None,
  with_uncertainty=True)`` -> dict ``sigma`` [P], ``color`` [P,3], ``ambient_aud`` [P],
  ``ambient_eye`` [P], ``uncertainty`` [P]
- ``HeadNetwork.density(x, enc_a, eye) -> sigma [P]``; ``geometry`` / ``appearance`` /
  ``uncertainty``: the two halves of ``forward`` (the renderer colours only visible samples)
- ``HeadNetwork.individual_code(index | None)`` (None at test time: code 0, as the reference)
- ``HeadNetwork.param_groups(lr, lr_net, audio_lr_scale)``: AdamW groups with the reference's
  learning rates (``audio_lr_scale`` 1)
- ``HeadNetwork.occupancy``: the :class:`~ernerf_core.model.occupancy.OccupancyGrid`
- ``HeadNetwork.config``: the :class:`HeadConfig` (``as_dict()`` is what checkpoints store)

Coordinates follow the reference: points in ``[-bound, bound]^3``, training AABB
``[-b, -b/2, -b, b, b/2, b]``, cameras in the OpenCV convention after
:func:`ernerf_core.model.rays.nerf_matrix_to_ngp`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .audio import AudioAttNet, AudioNet
from .encoders import HashGridSpec, TriPlaneHashGrid, sh_encode
from .layers import linear_on_parts
from .occupancy import OccupancyGrid

PLANES = TriPlaneHashGrid.PLANES
MOUTH_PROBE_OUT = 2  # mouth opening and width (train.mouth_targets)
CODE_STATS_MOMENTUM = 0.01  # a step's 8 codes move the running code statistics this much


@dataclass
class HeadConfig:
    """Everything needed to rebuild a head network (saved in checkpoints and model.pt)."""

    audio_in: int  # C, feature channels
    audio_window: int  # W, feature steps per frame
    n_individual: int  # individual codes (one per training frame)
    grids: dict[str, HashGridSpec] = field(default_factory=lambda: {p: HashGridSpec() for p in PLANES})
    audio_dim: int = 32
    individual_dim: int = 4
    bound: float = 1.0
    min_near: float = 0.05
    occupancy_resolution: int = 128
    max_samples: int = 16
    density_thresh: float = 10.0
    audio_attention_init: str = "uniform"  # AudioAttNet's start: "uniform" (reference) or "centre"
    # standardise each feature channel with the training frames' mean and std (False: the
    # reference's raw features, and model files written before this key)
    audio_normalize: bool = False
    # standardise the per-frame audio code (AudioNet's output) with running statistics over
    # the training frames, kept by an exponential average while training (False: reference)
    audio_code_norm: bool = False
    # a linear read-out of the audio code to the mouth's opening and width, trained on the
    # subject's landmarks (train.head.lambda_mouth); rendering never uses it
    mouth_probe: bool = False

    def as_dict(self) -> dict:
        d = asdict(self)
        d["grids"] = {p: s.as_dict() for p, s in self.grids.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HeadConfig:
        d = dict(d)
        d["grids"] = {p: HashGridSpec(**g) for p, g in d["grids"].items()}
        return cls(**d)


def head_config_from_dict(model_cfg: dict, audio_shape: tuple[int, int], n_individual: int) -> HeadConfig:
    """HeadConfig from the ``model:`` config section (missing keys = reference defaults).

    ``model_cfg``: ``{"grids": {"xy"|"yz"|"xz": {levels, features_per_level, log2_table_size,
    base_resolution, finest_resolution}}, "max_samples", "occupancy_resolution",
    "density_thresh", "audio_attention_init", "audio_normalize", "audio_code_norm",
    "mouth_probe"}``. ``audio_shape`` = (W, C) of the features file ``[N, W, C]``.
    """
    grids_cfg = model_cfg.get("grids", {}) or {}
    grids = {p: HashGridSpec(**(grids_cfg.get(p) or {})) for p in PLANES}
    extra = {k: model_cfg[k] for k in ("max_samples", "occupancy_resolution", "density_thresh",
                                              "audio_attention_init", "audio_normalize",
                                              "audio_code_norm", "mouth_probe")
             if k in model_cfg}
    W, C = audio_shape
    return HeadConfig(audio_in=int(C), audio_window=int(W), n_individual=int(n_individual),
                      grids=grids, **extra)


class MLP(nn.Module):
    """Bias-free ReLU MLP, no output activation (the reference's ``MLP``)."""

    def __init__(self, dim_in: int, dim_out: int, dim_hidden: int, num_layers: int):
        super().__init__()
        dims = [dim_in] + [dim_hidden] * (num_layers - 1) + [dim_out]
        self.net = nn.ModuleList(nn.Linear(a, b, bias=False) for a, b in zip(dims[:-1], dims[1:], strict=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._rest(self.net[0](x))

    def forward_parts(self, parts: list[torch.Tensor], shared: torch.Tensor | None = None) -> torch.Tensor:
        """``forward(cat([*parts, shared.expand(N, -1)], -1))`` without the concatenation."""
        return self._rest(linear_on_parts(self.net[0].weight, parts, shared))

    def _rest(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net[1:]:
            x = layer(F.relu(x, inplace=True))
        return x


class _TruncExp(torch.autograd.Function):
    """exp(x) whose gradient uses exp(clamp(x, max=15)): keeps early training finite.
    Computed in float32 (under autocast x may be half, whose exp overflows above 11)."""

    @staticmethod
    def forward(ctx, x):
        x = x.float()
        ctx.save_for_backward(x)
        return torch.exp(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x.clamp(max=15))


def trunc_exp(x: torch.Tensor) -> torch.Tensor:
    return _TruncExp.apply(x)


class HeadNetwork(nn.Module):
    """The ER-NeRF head field plus its occupancy grid. See the module docstring for the API."""

    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.config = cfg
        b = cfg.bound
        self.register_buffer("aabb", torch.tensor([-b, -b / 2, -b, b, b / 2, b], dtype=torch.float32))
        if cfg.audio_normalize:  # set from the training features by set_audio_stats
            self.register_buffer("audio_mean", torch.zeros(cfg.audio_in, 1))
            self.register_buffer("audio_std", torch.ones(cfg.audio_in, 1))
        if cfg.audio_code_norm:  # set by set_audio_stats, then followed while training
            self.register_buffer("code_mean", torch.zeros(cfg.audio_dim))
            self.register_buffer("code_var", torch.ones(cfg.audio_dim))
        self.audio_net = AudioNet(cfg.audio_in, cfg.audio_dim)
        self.audio_att_net = AudioAttNet(cfg.audio_dim, init=cfg.audio_attention_init)
        if cfg.mouth_probe:
            self.mouth_probe = nn.Linear(cfg.audio_dim, MOUTH_PROBE_OUT)
        self.encoder = TriPlaneHashGrid(cfg.grids, bound=b)
        in_dim = self.encoder.out_dim
        self.eye_att_net = MLP(in_dim, 1, 16, 2)
        self.aud_ch_att_net = MLP(in_dim, cfg.audio_dim, 64, 2)
        self.geo_feat_dim = 64
        self.sigma_net = MLP(in_dim + cfg.audio_dim + 1, 1 + self.geo_feat_dim, 64, 3)
        self.color_net = MLP(16 + self.geo_feat_dim + cfg.individual_dim, 3, 64, 2)
        self.unc_net = MLP(in_dim, 1, 32, 2)
        self.individual_codes = nn.Parameter(torch.randn(cfg.n_individual, cfg.individual_dim) * 0.1)
        self.occupancy = OccupancyGrid(cfg.occupancy_resolution, bound=b, aabb=self.aabb.tolist(),
                                       density_thresh=cfg.density_thresh)

    # --- audio -----------------------------------------------------------------------------
    @torch.no_grad()
    def set_audio_stats(self, features: torch.Tensor, max_frames: int = 1024) -> None:
        """Statistics of the training frames' features ``[N, C, W]``: per-channel mean and std
        of the features (``audio_normalize``), then of the audio codes (``audio_code_norm``).

        Why tried: with the reference's raw log-mel and initialisation the per-frame code's
        spread across frames is about 1-2 % of its size (10 % after a 1,200-step head on a
        real clip). Measured: standardising it did not make the mouth follow the audio; the
        mouth read-out (train.head.lambda_mouth) did (docs/real_faces.md)."""
        cfg = self.config
        if cfg.audio_normalize:
            x = features.transpose(0, 1).reshape(features.shape[1], -1).double()  # [C, N*W]
            self.audio_mean.copy_(x.mean(1, keepdim=True).float())
            self.audio_std.copy_(x.std(1, keepdim=True).clamp_min(1e-3).float())
        if cfg.audio_code_norm:
            step = max(1, features.shape[0] // max_frames)
            codes = self.audio_net(self._normalized_input(features[::step]))  # [n, dim]
            self.code_mean.copy_(codes.mean(0))
            self.code_var.copy_(codes.var(0, unbiased=False))

    def _normalized_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.audio_mean) / self.audio_std if self.config.audio_normalize else x

    def _normalized_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [..., dim] standardised by the running statistics, which a training step
        with gradients moves towards its own codes (``CODE_STATS_MOMENTUM``)."""
        if self.training and torch.is_grad_enabled():
            with torch.no_grad():
                flat = codes.detach().reshape(-1, codes.shape[-1])
                self.code_mean.lerp_(flat.mean(0), CODE_STATS_MOMENTUM)
                self.code_var.lerp_(flat.var(0, unbiased=False) + (flat.mean(0) - self.code_mean) ** 2,
                                    CODE_STATS_MOMENTUM)
        return (codes - self.code_mean) / torch.sqrt(self.code_var + 1e-12)

    def encode_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """windows [8, C, W] (one frame) or [B, 8, C, W] -> audio codes [1 or B, audio_dim]."""
        if windows.dim() == 3:
            windows = windows.unsqueeze(0)
        B, S = windows.shape[:2]
        codes = self.audio_net(self._normalized_input(windows.flatten(0, 1))).view(B, S, -1)  # [B, 8, 32]
        if self.config.audio_code_norm:
            codes = self._normalized_codes(codes)
        return self.audio_att_net(codes)

    def individual_code(self, index: int | None) -> torch.Tensor:
        """The frame's code in training; code 0 for unseen (test/driving) frames."""
        return self.individual_codes[0 if index is None else int(index)]

    # --- field -----------------------------------------------------------------------------
    def _density(self, enc_x: torch.Tensor, enc_a: torch.Tensor, eye: torch.Tensor | None):
        aud_ch_att = self.aud_ch_att_net(enc_x)  # [P, 32]
        enc_w = enc_a * aud_ch_att
        eye_att = torch.sigmoid(self.eye_att_net(enc_x))  # [P, 1]
        e = (eye.reshape(1, 1) if eye is not None else enc_x.new_zeros(1, 1)) * eye_att
        h = self.sigma_net.forward_parts([enc_x, enc_w, e])
        return trunc_exp(h[:, 0]), h[:, 1:], aud_ch_att, eye_att

    def density(self, x: torch.Tensor, enc_a: torch.Tensor, eye: torch.Tensor | None) -> torch.Tensor:
        """sigma [P] at points x [P, 3]."""
        return self._density(self.encoder(x), enc_a, eye)[0]

    def geometry(self, x: torch.Tensor, enc_a: torch.Tensor, eye: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The density half of the field: ``enc_x`` [P, 36], ``sigma`` [P], ``geo`` [P, 64],
        ``ambient_aud`` [P], ``ambient_eye`` [P] (the renderer colours only visible samples)."""
        enc_x = self.encoder(x)
        sigma, geo, aud_ch_att, eye_att = self._density(enc_x, enc_a, eye)
        return {"enc_x": enc_x, "sigma": sigma, "geo": geo, "ambient_aud": aud_ch_att.norm(dim=-1),
                "ambient_eye": eye_att[:, 0]}

    def appearance(self, geo: torch.Tensor, d: torch.Tensor, ind_code: torch.Tensor | None) -> torch.Tensor:
        """colour [P, 3] in [-0.001, 1.001] from geometry features and unit view directions."""
        if ind_code is None:
            ind_code = self.individual_codes[0]
        h = self.color_net.forward_parts([sh_encode(d), geo], shared=ind_code.view(1, -1))
        return torch.sigmoid(h) * (1 + 2 * 0.001) - 0.001

    def uncertainty(self, enc_x: torch.Tensor) -> torch.Tensor:
        """[P] >= 0, from detached position features (it must not shape the geometry)."""
        return F.softplus(self.unc_net(enc_x.detach()))[:, 0]

    def forward(self, x: torch.Tensor, d: torch.Tensor, enc_a: torch.Tensor,
                ind_code: torch.Tensor | None, eye: torch.Tensor | None,
                with_uncertainty: bool = True) -> dict[str, torch.Tensor]:
        """Field at points x [P, 3] seen along unit directions d [P, 3]. Without
        ``with_uncertainty`` (inference) the uncertainty head is skipped and returns zeros."""
        g = self.geometry(x, enc_a, eye)
        unc = self.uncertainty(g["enc_x"]) if with_uncertainty else g["sigma"].new_zeros(g["sigma"].shape)
        return {"sigma": g["sigma"], "color": self.appearance(g["geo"], d, ind_code),
                "ambient_aud": g["ambient_aud"], "ambient_eye": g["ambient_eye"], "uncertainty": unc}

    # --- optimisation ----------------------------------------------------------------------
    def param_groups(self, lr: float = 1e-2, lr_net: float = 1e-3, audio_lr_scale: float = 1.0) -> list[dict]:
        """AdamW groups as the reference: grids at ``lr`` (AdamW's default weight decay 0.01,
        as the reference leaves it), MLPs and codes at ``lr_net`` (no decay), the audio
        attention net at ``5 * lr_net`` with decay 1e-4. ``audio_lr_scale`` multiplies the
        rates of the audio encoder and the per-point channel attention (not of the attention
        over frames: at 25 x ``lr_net`` it diverges within 100 steps on a real clip)."""
        lr_aud = lr_net * audio_lr_scale
        probe = [{"name": "mouth_probe", "params": list(self.mouth_probe.parameters()), "lr": lr_aud,
                  "weight_decay": 0.0}] if self.config.mouth_probe else []
        return [
            {"name": "audio_net", "params": list(self.audio_net.parameters()), "lr": lr_aud, "weight_decay": 0.0},
            {"name": "encoder", "params": list(self.encoder.parameters()), "lr": lr, "weight_decay": 0.01},
            {"name": "sigma_net", "params": list(self.sigma_net.parameters()), "lr": lr_net, "weight_decay": 0.0},
            {"name": "color_net", "params": list(self.color_net.parameters()), "lr": lr_net, "weight_decay": 0.0},
            {"name": "audio_att_net", "params": list(self.audio_att_net.parameters()), "lr": lr_net * 5,
             "weight_decay": 1e-4},
            {"name": "individual_codes", "params": [self.individual_codes], "lr": lr_net, "weight_decay": 0.0},
            {"name": "aud_ch_att_net", "params": list(self.aud_ch_att_net.parameters()), "lr": lr_aud,
             "weight_decay": 0.0},
            {"name": "unc_net", "params": list(self.unc_net.parameters()), "lr": lr_net, "weight_decay": 0.0},
            {"name": "eye_att_net", "params": list(self.eye_att_net.parameters()), "lr": lr_net,
             "weight_decay": 0.0},
        ] + probe


def build_head(model_cfg: dict, audio_shape: tuple[int, int], n_individual: int) -> HeadNetwork:
    """The head network from the ``model:`` config section and the features' (W, C)."""
    return HeadNetwork(head_config_from_dict(model_cfg, audio_shape, n_individual))
