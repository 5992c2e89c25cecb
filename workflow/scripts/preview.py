from pathlib import Path

from ernerf_core.preprocess.preview import make_preview
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    make_preview,
    subject=snakemake.wildcards.subject,
    data_dir=str(Path(snakemake.input.landmarks).parent.parent / "data"),
    sheet_path=snakemake.output.sheet,
)
