from ernerf_core.preprocess.torso_gt import make_torso_and_gt
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    make_torso_and_gt,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    gt_dir=snakemake.output.gt,
    torso_dir=snakemake.output.torso,
    manifest_path=snakemake.output.manifest,
)
