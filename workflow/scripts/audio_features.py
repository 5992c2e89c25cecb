from ernerf_core.audio.features import extract_features
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    extract_features,
    subject=snakemake.wildcards.subject,
    audio=snakemake.input.audio,
    features_path=snakemake.output.features,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
