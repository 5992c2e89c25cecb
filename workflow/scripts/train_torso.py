from ernerf_core.stage_runner import run_from_snakemake, use_subject_config
from ernerf_core.train.torso import train_torso

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    train_torso,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    model_path=snakemake.output.model,
    manifest_path=snakemake.output.manifest,
    # the params (what defines the model) over the config section, which adds the keys that
    # are not params (validation cadence, checkpoints, cache: TRAIN_RUNTIME_KEYS)
    settings={**snakemake.config["train"]["torso"], **snakemake.params.settings},
    device=snakemake.config["train"]["device"],
)
