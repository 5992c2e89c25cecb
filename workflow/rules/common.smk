# Helpers shared by the rule files (config validation, paths, per-subject lookups).
# Rules call these named functions instead of lambdas (snakemake --lint).

import os
from pathlib import Path

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

SUBJECTS = sorted(config["subjects"])
DRIVING = sorted(config["driving_audio"])

# Rules use `conda: CONDA_ENV` (relative to workflow/rules/) for --sdm conda.
CONDA_ENV = "../../envs/ernerf.yaml"

# Scripts import ernerf_core from this checkout in any environment: the venv has it installed
# (editable), a --sdm conda env is built from envs/ernerf.yaml alone (Snakemake copies that
# file, so it cannot name the checkout) and finds it through PYTHONPATH, which jobs inherit.
CHECKOUT = str(Path(str(workflow.current_basedir)).resolve().parents[1])  # above workflow/rules/
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if CHECKOUT not in _paths:
    # set, not required: so not an `envvars:` entry
    os.environ.update(PYTHONPATH=os.pathsep.join([CHECKOUT, *_paths]))


def subject_video(wildcards):
    return config["subjects"][wildcards.subject]["video"]


def driving_audio_file(wildcards):
    return config["driving_audio"][wildcards.audio]


def data(path):
    """A file of the ER-NeRF subject folder (ERNERF_FACTS.md section 1)."""
    return f"results/{{subject}}/data/{path}"


def subject_data(wildcards, input):
    """The ER-NeRF subject folder, as the ``data_dir`` param: the folder that holds the rule's
    declared inputs (stage functions read the reference's file names inside it)."""
    folders = {str(Path(f).parent) for f in input if Path(f).parent.name == "data"}
    if len(folders) != 1:
        raise ValueError(f"inputs {list(input)} do not name one subject data folder")
    return folders.pop()


def manifest(stage):
    return f"results/{{subject}}/manifests/{stage}.json"


def log(stage):
    return f"logs/{{subject}}/{stage}.log"


def bench(stage):
    return f"results/{{subject}}/benchmarks/{stage}.tsv"


AUDIO_FEATURE_FILE = {
    "mel": "aud_mel.npy",
    "hubert": "aud_hu.npy",
    "wav2vec": "aud_eo.npy",
    "deepspeech": "aud.npy",
}


# The backends that read audio.checkpoint (mel has no weights).
AUDIO_WEIGHTS_BACKENDS = ["hubert", "wav2vec", "deepspeech"]


def audio_feature_file():
    return AUDIO_FEATURE_FILE[config["audio"]["backend"]]


def driving_features():
    """Features of one driving audio (wildcard `audio`), made with the configured backend."""
    return f"results/driving/{{audio}}/{audio_feature_file()}"


# What SubjectDataset (ernerf_core/train/dataset.py) reads: every training and rendering rule
# declares these (`**DATASET_INPUTS`), so a new audio backend's feature file or a redone
# preprocessing stage reaches the models.
DATASET_INPUTS = {
    "transforms_train": data("transforms_train.json"),
    "transforms_val": data("transforms_val.json"),
    "au": data("au.csv"),
    "bc": data("bc.jpg"),
    "gt_imgs": data("gt_imgs"),
    "torso_imgs": data("torso_imgs"),
    "lms": data("lms"),
    "features": data(audio_feature_file()),
    "audio_manifest": manifest("audio_features"),
}

# What the torso reads (ernerf_core/train/torso.py: poses, frames, bc.jpg; no audio, blink or
# landmarks), so a new audio backend or blink detector leaves a trained torso alone.
TORSO_INPUTS = {
    k: DATASET_INPUTS[k]
    for k in ("transforms_train", "transforms_val", "bc", "gt_imgs", "torso_imgs")
}


def backend_file(section, backend, key):
    """A user-provided weights or data file as an input, when the configured backend uses it
    and the config names it (null: the stage looks in its documented default place)."""
    cfg = config[section]
    return [cfg[key]] if cfg["backend"] == backend and cfg[key] else []


def backend_param(section, backends, key):
    """A setting only some backends read, as a rule param: None while another backend is
    configured, so changing it then reruns nothing."""
    cfg = config[section]
    return cfg[key] if cfg["backend"] in backends else None


def final_targets():
    targets = []
    for s in SUBJECTS:
        targets += [
            f"results/{s}/preview/contact_sheet.png",
            f"results/{s}/preview/tracking.png",
            f"results/{s}/render/test.mp4",
            f"results/{s}/render/metrics.json",
        ]
        targets += [f"results/{s}/render/audio/{a}.mp4" for a in DRIVING]
    return targets


# Training keys that never change a model (validation cadence, checkpoint interval, frame
# cache): not params, so changing one reruns nothing; the scripts take them from the config.
TRAIN_RUNTIME_KEYS = ("val_every", "val_frames", "checkpoint_every", "cache_mb")


def train_settings(stage):
    """Params of a training stage: the shared loss/seed keys plus the stage's own section
    (less TRAIN_RUNTIME_KEYS), and for the head stages the ``model`` section.

    Only these go into ``params:``, so changing e.g. the torso section never makes the
    head stale, and the head's network sizes (``model``) never make the torso stale (its
    grid is train.torso.grid). ``device`` stays out: it does not define the result.
    """
    train = config["train"]
    shared = {k: train[k] for k in ("seed", "loss", "huber_delta")}
    own = {k: v for k, v in train.get(stage, {}).items() if k not in TRAIN_RUNTIME_KEYS}
    model = {} if stage == "torso" else {"model": config.get("model", {})}
    return {**shared, **model, **own}
