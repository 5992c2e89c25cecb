from pathlib import Path

from ernerf_core.preprocess.background import extract_background
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    extract_background,
    subject=snakemake.wildcards.subject,
    data_dir=str(Path(snakemake.output.bc).parent),
    bc_path=snakemake.output.bc,
    manifest_path=snakemake.output.manifest,
)
