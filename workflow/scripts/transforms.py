from ernerf_core.preprocess.transforms import write_transforms
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    write_transforms,
    subject=snakemake.wildcards.subject,
    params_path=snakemake.input.params,
    train_path=snakemake.output.train,
    val_path=snakemake.output.val,
    manifest_path=snakemake.output.manifest,
)
