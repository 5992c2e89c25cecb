from ernerf_core.preprocess.preview import make_preview
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    make_preview,
    subject=snakemake.wildcards.subject,
    data_dir=snakemake.params.data_dir,
    sheet_path=snakemake.output.sheet,
)
