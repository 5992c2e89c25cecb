"""Load a user's transformers checkpoint from disk only: a local directory or the HF cache.

Nothing is ever downloaded (every call passes ``local_files_only=True``). Whatever is wrong
with a checkpoint (absent, another model type, weights missing, no preprocessor) is a
``StageError`` naming the checkpoint, where it was looked for and how to get it, because
a model with randomly initialised layers would give plausible-looking, useless features.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StageError

STAGE = "audio_features"
# Parameters that exist in a model but are never used at inference (SpecAugment mask).
_UNUSED_AT_INFERENCE = ("masked_spec_embed",)


@dataclass
class LocalCheckpoint:
    model: Any  # torch.nn.Module in eval mode
    preprocessor: Any  # feature extractor or processor
    name: str  # what the user gave (or the default)
    source: str  # the directory or cache entry it was loaded from
    config: Any


def hf_cache_dir() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def _how_to_get(name: str) -> str:
    return (f"on a machine with internet run `hf download {name}` (fills the Hugging Face cache, "
            f"which can be copied here) or save the model to a directory and set audio.checkpoint "
            f"to it (config.json, weights, preprocessor_config.json); nothing is downloaded at run time")


def load_local_checkpoint(subject: str, backend: str, name: str, *, model_cls: type,
                          preprocessor_cls: type, model_types: tuple[str, ...]) -> LocalCheckpoint:
    """``model_cls`` + ``preprocessor_cls`` from directory ``name`` or cached repo ``name``."""
    # Belt and braces with local_files_only: huggingface_hub reads this when first imported.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoConfig

    path = Path(name).expanduser()
    if path.is_dir():
        ref, where = str(path.resolve()), f"directory {path.resolve()}"
    elif path.is_file():
        raise StageError(subject, STAGE, f"{backend} checkpoint '{name}' is a file, not a model directory",
                         _how_to_get(name))
    else:
        ref = name
        where = f"'{name}' in the Hugging Face cache {hf_cache_dir()} (no directory {path.resolve()})"

    try:
        config = AutoConfig.from_pretrained(ref, local_files_only=True)
    except (OSError, ValueError) as err:
        if path.is_dir():
            problem = f"{backend} checkpoint {where} has no readable config.json ({_first_line(err)})"
        else:  # transformers' own text for a cache miss talks of connecting: nothing tried to
            problem = f"{backend} checkpoint '{name}' not found: looked for {where}"
        raise StageError(subject, STAGE, problem, _how_to_get(name)) from None
    if config.model_type not in model_types:
        raise StageError(subject, STAGE, f"checkpoint '{name}' is a '{config.model_type}' model but the "
                         f"{backend} backend needs {' or '.join(repr(t) for t in model_types)}",
                         "set audio.checkpoint to a matching checkpoint or pick the backend that fits it")
    try:
        model, info = model_cls.from_pretrained(ref, local_files_only=True, output_loading_info=True)
    except (OSError, ValueError) as err:
        raise StageError(subject, STAGE, f"{backend} checkpoint '{name}' ({where}) has no loadable weights: "
                         f"{_first_line(err)}", _how_to_get(name)) from None
    missing = [k for k in info.get("missing_keys", []) if not k.endswith(_UNUSED_AT_INFERENCE)]
    if missing:
        raise StageError(subject, STAGE, f"{backend} checkpoint '{name}' ({where}) lacks {len(missing)} "
                         f"weights of {model_cls.__name__} (e.g. {', '.join(sorted(missing)[:3])})",
                         f"use a complete {model_cls.__name__} checkpoint; {_how_to_get(name)}")
    try:
        preprocessor = preprocessor_cls.from_pretrained(ref, local_files_only=True)
    except (OSError, ValueError, TypeError) as err:
        raise StageError(subject, STAGE, f"{backend} checkpoint '{name}' ({where}) has no usable "
                         f"{preprocessor_cls.__name__} files: {_first_line(err)}",
                         _how_to_get(name)) from None
    model.eval()
    return LocalCheckpoint(model=model, preprocessor=preprocessor, name=name, source=where, config=config)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
