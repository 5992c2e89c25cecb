from ernerf_core.preprocess.preview import make_preview
from ernerf_core.stage_runner import run_from_snakemake, use_subject_config

use_subject_config(snakemake)  # snakemake.config: this subject's, overrides applied
run_from_snakemake(
    snakemake,
    make_preview,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    sheet_path=snakemake.output.sheet,
)
