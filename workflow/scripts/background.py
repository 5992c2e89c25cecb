from ernerf_core.preprocess.background import extract_background
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    extract_background,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    bc_path=snakemake.output.bc,
    manifest_path=snakemake.output.manifest,
)
