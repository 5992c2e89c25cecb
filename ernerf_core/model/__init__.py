"""ER-NeRF networks: encoders, head and torso fields, occupancy grid, renderer.

The head API other stages build on (stable; details in each module's docstring):

- ``build_head(model_cfg, audio_shape=(W, C), n_individual)`` -> :class:`HeadNetwork` (``head``)
- ``load_head(path, device)`` / ``save_head(path, model, meta)``: ``model.pt`` (``io``)
- ``render_rays(...)``, ``render_image(model, pose, intrinsics, H, W, audio_window, eye,
  bg_image)`` -> {"image", "weights_sum", "depth"} (``renderer``); the head is composited
  over the given background as the reference: ``image = head + (1 - weights_sum) * bg``
- ``pixel_rays``, ``nerf_matrix_to_ngp`` (``rays``); ``audio_window`` (``audio``)
- ``encoders.hash_grid_encode`` dispatches to the native grid kernel (``native_grid``, built
  from ``cuda_ext/gridencoder`` on first use; ``ERNERF_EXT=off`` keeps the reference);
  ``renderer.march_rays`` and ``renderer.composite_weights`` are pure PyTorch
"""

from .audio import audio_window
from .head import HeadConfig, HeadNetwork, build_head
from .io import load_head, save_head
from .rays import nerf_matrix_to_ngp, pixel_rays
from .renderer import render_image, render_rays

__all__ = ["HeadConfig", "HeadNetwork", "audio_window", "build_head", "load_head", "nerf_matrix_to_ngp",
           "pixel_rays", "render_image", "render_rays", "save_head"]
