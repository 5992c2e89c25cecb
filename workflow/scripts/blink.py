from ernerf_core.preprocess.blink import extract_blink
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    extract_blink,
    subject=snakemake.wildcards.subject,
    au_path=snakemake.output.au,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
