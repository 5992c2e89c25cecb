from pathlib import Path

from ernerf_core.preprocess.landmarks import detect_landmarks
from ernerf_core.stage_runner import run_from_snakemake

run_from_snakemake(
    snakemake,
    detect_landmarks,
    subject=snakemake.wildcards.subject,
    data_dir=str(Path(snakemake.output.dense).parent),
    dense_path=snakemake.output.dense,
    manifest_path=snakemake.output.manifest,
    **dict(snakemake.params.items()),
)
