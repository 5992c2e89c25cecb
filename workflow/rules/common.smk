# Helpers shared by the rule files (config validation, paths, per-subject lookups).
# Rules call these named functions instead of lambdas (snakemake --lint).

import os
import re
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml", set_default=True)

# Rules use `conda: CONDA_ENV` (relative to workflow/rules/) for --sdm conda.
CONDA_ENV = "../../envs/ernerf.yaml"

# Scripts import ernerf_core from this checkout in any environment: the venv has it installed
# (editable), a --sdm conda env is built from envs/ernerf.yaml alone (Snakemake copies that
# file, so it cannot name the checkout) and finds it through PYTHONPATH, which jobs inherit.
CHECKOUT = str(
    Path(str(workflow.current_basedir)).resolve().parents[1]
)  # above workflow/rules/
_paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
if CHECKOUT not in _paths:
    # set, not required: so not an `envvars:` entry
    os.environ.update(PYTHONPATH=os.pathsep.join([CHECKOUT, *_paths]))

# This process reads the sample sheet with ernerf_core too (pure Python: csv and yaml).
if CHECKOUT not in sys.path:
    sys.path.insert(0, CHECKOUT)
from ernerf_core.subjects import SheetError, merge, nest, read_sheet, subject_config


def load_subjects():
    """Every subject, {name: {video, overrides}}: the config mapping and the sample sheet's
    rows (subject_sheet). Each sheet row is checked against subjects.schema.yaml and each
    subject's own config (overrides applied) against the config schema."""
    subjects = {
        name: {"video": s["video"], "overrides": s.get("overrides") or {}}
        for name, s in config["subjects"].items()
    }
    sheet = config["subject_sheet"]
    try:
        rows = read_sheet(sheet) if sheet else []
    except SheetError as err:
        raise WorkflowError(str(err)) from None
    for row in rows:
        flat = {"name": row["name"], "video": row["video"], **row["overrides"]}
        try:
            validate(flat, schema="../schemas/subjects.schema.yaml")
        except WorkflowError as err:
            raise WorkflowError(
                f"sample sheet {sheet}, subject {row['name']!r}: {err}"
            ) from None
        if row["name"] in subjects:
            where = (
                "twice in"
                if row["name"] not in config["subjects"]
                else "in the config's subjects and in"
            )
            raise WorkflowError(f"subject {row['name']!r} is {where} {sheet}")
        try:
            overrides = nest(row["overrides"])
        except SheetError as err:
            raise WorkflowError(
                f"sample sheet {sheet}, subject {row['name']!r}: {err}"
            ) from None
        subjects[row["name"]] = {"video": row["video"], "overrides": overrides}
    if not subjects:
        raise WorkflowError(
            "no subjects: name them under `subjects:` or in a sample sheet (`subject_sheet:`)"
        )
    for name, s in subjects.items():
        if s["overrides"]:
            try:
                validate(
                    merge(config, s["overrides"]),
                    schema="../schemas/config.schema.yaml",
                )
            except WorkflowError as err:
                raise WorkflowError(
                    f"subject {name!r}: its overrides {s['overrides']} give an invalid config: {err}"
                ) from None
    return subjects


# Scripts see config["subjects"] too (stage_runner.use_subject_config applies the overrides).
config["subjects"] = load_subjects()
SUBJECTS = sorted(config["subjects"])
DRIVING = sorted(config["driving_audio"])
# The config each subject's jobs see: adding or changing a subject leaves the others' alone.
SUBJECT_CONFIG = {name: subject_config(config, name) for name in SUBJECTS}


def job_config(wildcards):
    """The config of a job: its subject's (overrides applied), else the shared config."""
    subject = getattr(wildcards, "subject", None)
    return SUBJECT_CONFIG[subject] if subject else config


def setting(*keys):
    """A config value for a rule (param, resource, threads), read from the job's subject's
    config: setting("preprocess", "resolution")."""

    def value(wildcards):
        node = job_config(wildcards)
        for key in keys:
            node = node[key]
        return node

    return value


def per_subject(helper, *args):
    """helper(*args, cfg=the job's config) for a rule: the per-subject form of backend_file,
    backend_param and train_settings."""

    def value(wildcards):
        return helper(*args, cfg=job_config(wildcards))

    return value


def rule_threads(rule):
    """A rule's threads: resources.<rule>.threads (stage_runner gives them to torch; Snakemake
    to OpenMP/BLAS through OMP_NUM_THREADS and kin)."""
    return setting("resources", rule, "threads")


def rule_resources(rule):
    """A rule's resources from resources.<rule>: mem_mb, runtime (minutes) and, only where the
    schema has one (training, rendering), gpu."""
    keys = [k for k in ("mem_mb", "runtime", "gpu") if k in config["resources"][rule]]
    return {k: setting("resources", rule, k) for k in keys}


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
    "phones": "aud_ph.npy",
    "mel_phones": "aud_mel_ph.npy",
}


# The backends that read audio.checkpoint (mel has no weights).
AUDIO_WEIGHTS_BACKENDS = ["hubert", "wav2vec", "deepspeech", "phones", "mel_phones"]


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


def backend_file(section, backend, key, cfg=None):
    """A user-provided weights or data file as an input, when the configured backend uses it
    and the config names it (null: the stage looks in its documented default place)."""
    section_cfg = (config if cfg is None else cfg)[section]
    return (
        [section_cfg[key]]
        if section_cfg["backend"] == backend and section_cfg[key]
        else []
    )


def backend_param(section, backends, key, cfg=None):
    """A setting only some backends read, as a rule's param (None while another backend is
    configured, so changing it then reruns nothing)."""
    section_cfg = (config if cfg is None else cfg)[section]
    return section_cfg[key] if section_cfg["backend"] in backends else None


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


def train_settings(stage, cfg=None):
    """Params of a training stage: the shared loss/seed/preset/precision keys plus the stage's own section
    (less TRAIN_RUNTIME_KEYS), and for the head stages the ``model`` section.

    Only these go into ``params:``, so changing e.g. the torso section never makes the
    head stale, and the head's network sizes (``model``) never make the torso stale (its
    grid is train.torso.grid). ``device`` stays out: it does not define the result.
    ``cfg``: a subject's config (per_subject), else the shared one.
    """
    cfg = config if cfg is None else cfg
    train = cfg["train"]
    shared = {
        k: train[k]
        for k in ("seed", "loss", "huber_delta", "preset", "mixed_precision")
    }
    own = {k: v for k, v in train.get(stage, {}).items() if k not in TRAIN_RUNTIME_KEYS}
    model = {} if stage == "torso" else {"model": cfg.get("model", {})}
    return {**shared, **model, **own}


# The render keys render_audio reads (not render_test's syncnet_weights).
RENDER_AUDIO_KEYS = ("smooth_path", "smooth_window", "fixed_eye", "downscale")


def render_audio_settings(wildcards):
    return {k: job_config(wildcards)["render"][k] for k in RENDER_AUDIO_KEYS}
