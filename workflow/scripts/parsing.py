from ernerf_core.preprocess.parsing import parse_faces
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    parse_faces,
    subject=snakemake.wildcards.subject,
    parsing_dir=snakemake.output.parsing,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
